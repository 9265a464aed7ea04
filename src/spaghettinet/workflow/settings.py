"""What a run was asked for (:class:`RunSettings`) and the workdir layout derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spaghettinet.workflow.engine import STATE_DIR

START_FILE = "start.json"
#: Timed runs per model in the latency stage (after 3 untimed ones).
LATENCY_RUNS = 30


@dataclass
class RunSettings:
    """Everything a run was asked for; each stage's stamp keeps the part it depends on.

    Attributes:
        data_dir: the folder of photos and ``.xml`` files (or photos only, with ``annotations``), or a COCO or
            YOLO dataset folder.
        workdir: the run's folder (the seed's layout is created inside).
        annotations: a separate folder of ``.xml`` files.
        format: ``voc``, ``coco`` or ``yolo``; None detects it from the folder.
        variant: SpaghettiNet-EdgeTPU ``s``, ``m`` or ``l``.
        input_size: side of the square model input.
        steps: training steps (default: scaled to the data size by ``config``).
        batch_size: training batch size (default: from the data size).
        time_budget: stop training when this wall-clock time is spent (``"20m"``, seconds).
        fine_tune_from: a checkpoint prefix to start from instead of the zoo's COCO checkpoint.
        from_scratch: start from random weights (no download).
        zoo_sha256: the sha256 the zoo tarball must have (default: ``$SPAGHETTINET_ZOO_SHA256_<V>``, else the
            hash recorded at its first download).
        test_fraction / seed: the split.
        quantize: ``auto`` (QAT when trained with it, else PTQ), ``qat``, ``ptq`` or ``none``.
        qat: train quantization-aware for the last 15 % of the steps (the config's ``graph_rewriter``); without
            it the int8 model comes from post-training quantization.
        calibration_images / check_images: export's PTQ calibration and check image counts (default: export's).
        latency_runs: timed runs per model in the latency stage.
        show_progress: training's progress bar on stderr.
        strict: stop at any validation error, as before this option existed; by default pairs with errors are
            left out (listed in the log, ``images/validation.json`` and the report) and the run goes on.

    Example:
        >>> RunSettings("photos", "work", time_budget="20m").model_dir
        PosixPath('work/training/training-output')
    """

    data_dir: Path
    workdir: Path
    annotations: Path | None = None
    format: str | None = None
    variant: str = "s"
    input_size: int = 320
    steps: int | None = None
    batch_size: int | None = None
    time_budget: str | float | None = None
    fine_tune_from: str | None = None
    from_scratch: bool = False
    zoo_sha256: str | None = None
    test_fraction: float = 0.2
    seed: int = 0
    quantize: str = "auto"
    qat: bool = True
    calibration_images: int | None = None
    check_images: int | None = None
    latency_runs: int = LATENCY_RUNS
    show_progress: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        # Callers pass strings and numbers as typed on a command line or in Python; keep one form.
        self.data_dir = Path(self.data_dir)
        self.workdir = Path(self.workdir)
        self.annotations = None if self.annotations is None else Path(self.annotations)
        self.input_size = int(self.input_size)
        self.fine_tune_from = None if self.fine_tune_from is None else str(self.fine_tune_from)
        self.from_scratch = bool(self.from_scratch)
        self.strict = bool(self.strict)

    # The seed's layout (the old TF1 recipe's folders), derived from the workdir.
    @property
    def images(self) -> Path:
        return self.workdir / "images"

    @property
    def training(self) -> Path:
        return self.workdir / "training"

    @property
    def model_dir(self) -> Path:
        return self.training / "training-output"

    @property
    def exported(self) -> Path:
        return self.workdir / "exported"

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    @property
    def label_map(self) -> Path:
        return self.training / "label_map.pbtxt"

    @property
    def config(self) -> Path:
        return self.training / "pipeline.config"

    @property
    def train_record(self) -> Path:
        return self.training / "train.record"

    @property
    def test_record(self) -> Path:
        return self.training / "test.record"

    @property
    def start_file(self) -> Path:
        return self.workdir / STATE_DIR / START_FILE

    @property
    def start_choice(self) -> str:
        """What was asked: ``"zoo"`` (the default), ``"scratch"`` or ``"checkpoint"`` (``fine_tune_from``)."""
        if self.fine_tune_from is not None:
            return "checkpoint"
        return "scratch" if self.from_scratch else "zoo"
