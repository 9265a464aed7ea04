"""SpaghettiNet-EdgeTPU S, M and L as data: one table per variant, read by one builder (``detector.py``).

A variant is an ordered list of nodes. Each node has a level (its output stride is ``2**level``), a width, the
nodes it reads (one passthrough source, or two or more resampled sources that are merged), and a sequence of
layers. The tables transcribe ``_spaghettinet_edgetpu_{s,m,l}()`` of the TF1 reference, tensorflow/models
``research/object_detection/models/ssd_spaghettinet_feature_extractor.py``; the names are its TF1 scope names,
so that checkpoints load by name.

Pure Python: no TensorFlow import, so the CLI can list variants cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from spaghettinet.errors import UsageError

#: Layer operations (the reference's ``IbnOp``, ``IbnFusedGrouped`` and ``SepConvOp``).
IBN = "ibn"  # inverted bottleneck: 1x1 expand (out*rate) + kxk depthwise + linear 1x1 projection
FUSED_IBN = "fused_ibn"  # grouped kxk full convs on channel slices (in/groups*rate each) + quantized concat + projection
SEPCONV = "sepconv"  # kxk depthwise with bias (no BN) + 1x1 pointwise + BN + ReLU6

#: Nodes whose outputs feed the SSD head, in head order (the reference's ``outputs`` list).
FEATURE_NODES: tuple[str, ...] = ("c0n1", "c0n2", "c0n3", "c0n4", "c0n5")


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a node.

    Args:
        op: ``"ibn"``, ``"fused_ibn"`` or ``"sepconv"``.
        kernel: spatial kernel size.
        expansion: expansion rate (IBN: of the output width; fused IBN: of each input slice); 0 for sepconv.
        stride: 1 or 2; only a node's first layer is strided.
        residual: add the layer's input to its output.
        groups: number of channel slices of a fused IBN; 1 otherwise.
    """

    op: str
    kernel: int
    expansion: int
    stride: int
    residual: bool
    groups: int = 1


@dataclass(frozen=True)
class NodeSpec:
    """One SpaghettiNet node.

    Args:
        name: TF1 node name (``"n0"``, ``"c0n3"``, ...); the stem is ``"s0"``.
        level: output stride is ``2**level``.
        filters: output channels.
        sources: input node names; a single source is a passthrough edge, several are resample edges merged
            by a top-left crop, a sum and ReLU6 (as the reference's ``_spaghetti_node``).
        layers: the layers run in order on the (merged) input; empty for the stem.
        stem_kernel: kernel of the stem convolution (stem only).
    """

    name: str
    level: int
    filters: int
    sources: tuple[str, ...]
    layers: tuple[LayerSpec, ...] = ()
    stem_kernel: int = 0

    @property
    def is_stem(self) -> bool:
        return not self.sources

    @property
    def is_passthrough(self) -> bool:
        return len(self.sources) == 1


@dataclass(frozen=True)
class Architecture:
    """A SpaghettiNet variant.

    Args:
        name: the TF1 arch name, e.g. ``"spaghettinet_edgetpu_s"``; also the checkpoint scope.
        nodes: nodes in build order.
        reference_macs: multiply-accumulates at 320x320 quoted in the reference config's header comments.
    """

    name: str
    nodes: tuple[NodeSpec, ...]
    reference_macs: float

    @property
    def short_name(self) -> str:
        return self.name.rsplit("_", 1)[-1]

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def ibn(kernel: int, expansion: int, stride: int = 1, residual: bool = True) -> LayerSpec:
    """An inverted-bottleneck layer (table shorthand)."""
    return LayerSpec(IBN, kernel, expansion, stride, residual)


def fused(kernel: int, expansion: int, groups: int, stride: int = 1, residual: bool = True) -> LayerSpec:
    """A fused grouped inverted-bottleneck layer (table shorthand)."""
    return LayerSpec(FUSED_IBN, kernel, expansion, stride, residual, groups)


def sep(kernel: int, stride: int = 1, residual: bool = True) -> LayerSpec:
    """A separable-conv layer (table shorthand)."""
    return LayerSpec(SEPCONV, kernel, 0, stride, residual)


def _first(layer: LayerSpec) -> LayerSpec:
    """The first layer of a node never has a residual (in every table of the reference)."""
    return LayerSpec(layer.op, layer.kernel, layer.expansion, layer.stride, False, layer.groups)


def _node(name: str, level: int, filters: int, sources: tuple[str, ...], *layers: LayerSpec) -> NodeSpec:
    return NodeSpec(name, level, filters, sources, (_first(layers[0]), *layers[1:]))


def _stem() -> NodeSpec:
    return NodeSpec("s0", 1, 24, (), (), stem_kernel=5)


# The reference's ``_spaghettinet_edgetpu_s()``.
SPAGHETTINET_EDGETPU_S = Architecture(
    "spaghettinet_edgetpu_s",
    (
        _stem(),
        _node("n0", 2, 48, ("s0",), fused(3, 8, 3, stride=2)),
        _node("n1", 3, 64, ("n0",), fused(3, 4, 4, stride=2), fused(3, 4, 4), fused(3, 4, 4)),
        _node("n2", 4, 72, ("n1",), ibn(3, 8, stride=2), fused(3, 8, 4), ibn(3, 8), ibn(3, 4)),
        _node("n3", 5, 88, ("n2",), ibn(3, 8, stride=2), ibn(3, 8), ibn(3, 4), ibn(3, 4)),
        _node("n4", 6, 88, ("n3",), ibn(3, 8, stride=2), sep(5), sep(5), sep(5)),
        _node("n5", 7, 88, ("n4",), sep(5, stride=2), sep(3)),
        _node("c0n0", 5, 144, ("n3", "n4"), ibn(3, 4), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n1", 4, 120, ("n2", "c0n0"), ibn(3, 8), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n2", 5, 168, ("c0n1", "c0n0"), ibn(3, 4)),
        _node("c0n3", 6, 136, ("n5", "c0n0"), ibn(3, 4), sep(3)),
        _node("c0n4", 7, 136, ("n5", "c0n0"), ibn(3, 4)),
        # "Level 8" is nominal: c0n5 is a stride-1 passthrough of c0n4, so the last two maps have one size.
        _node("c0n5", 8, 64, ("c0n4",), sep(3), sep(3)),
    ),
    reference_macs=1.0e9,
)

# The reference's ``_spaghettinet_edgetpu_m()`` (the sample config's active choice).
SPAGHETTINET_EDGETPU_M = Architecture(
    "spaghettinet_edgetpu_m",
    (
        _stem(),
        _node("n0", 2, 48, ("s0",), fused(3, 8, 3, stride=2)),
        _node("n1", 3, 64, ("n0",), fused(3, 8, 4, stride=2), fused(3, 4, 4), fused(3, 4, 4), fused(3, 4, 4)),
        _node("n2", 4, 72, ("n1",), ibn(3, 8, stride=2), fused(3, 8, 4), ibn(3, 8), ibn(3, 8)),
        _node("n3", 5, 96, ("n2",), ibn(3, 8, stride=2), ibn(3, 8), ibn(3, 8), ibn(3, 4)),
        _node("n4", 6, 104, ("n3",), ibn(3, 8, stride=2), ibn(3, 4), sep(5), ibn(3, 4)),
        _node("n5", 7, 56, ("n4",), sep(5, stride=2), sep(3)),
        _node("c0n0", 5, 152, ("n3", "n4"), ibn(3, 8), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n1", 4, 120, ("n2", "c0n0"), ibn(3, 8), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n2", 5, 168, ("c0n1", "c0n0"), ibn(3, 4), sep(3)),
        _node("c0n3", 6, 136, ("n5", "c0n0"), sep(3), sep(3), sep(3)),
        _node("c0n4", 7, 136, ("n5", "c0n0"), ibn(3, 4), sep(5)),
        _node("c0n5", 8, 64, ("c0n4",), sep(3), sep(3)),
    ),
    reference_macs=1.25e9,
)

# The reference's ``_spaghettinet_edgetpu_l()``.
SPAGHETTINET_EDGETPU_L = Architecture(
    "spaghettinet_edgetpu_l",
    (
        _stem(),
        _node("n0", 2, 48, ("s0",), fused(3, 8, 3, stride=2)),
        _node("n1", 3, 64, ("n0",), fused(3, 8, 4, stride=2), fused(3, 8, 4), fused(3, 8, 4), fused(3, 4, 4)),
        _node("n2", 4, 80, ("n1",), ibn(3, 8, stride=2), ibn(3, 8), ibn(3, 8), ibn(3, 4)),
        _node("n3", 5, 104, ("n2",), ibn(3, 8, stride=2), ibn(3, 8), ibn(3, 8), ibn(3, 8)),
        _node("n4", 6, 88, ("n3",), ibn(3, 8, stride=2), ibn(5, 4), ibn(3, 4), ibn(3, 8)),
        _node("n5", 7, 56, ("n4",), ibn(5, 4, stride=2), sep(5)),
        _node("c0n0", 5, 160, ("n3", "n4"), ibn(3, 8), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n1", 4, 120, ("n2", "c0n0"), ibn(3, 8), ibn(3, 4), ibn(3, 4), ibn(3, 8)),
        _node("c0n2", 5, 168, ("c0n1", "c0n0"), ibn(3, 4), ibn(3, 4), ibn(3, 4), ibn(3, 4)),
        _node("c0n3", 6, 112, ("n5", "c0n0"), ibn(3, 8), ibn(3, 4), sep(3)),
        _node("c0n4", 7, 128, ("n5", "c0n0"), ibn(3, 4), ibn(3, 4)),
        _node("c0n5", 8, 64, ("c0n4",), sep(5), sep(5)),
    ),
    reference_macs=1.57e9,
)

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch for arch in (SPAGHETTINET_EDGETPU_S, SPAGHETTINET_EDGETPU_M, SPAGHETTINET_EDGETPU_L)
}

#: What users may type: the short letter or the TF1 arch name.
VARIANT_NAMES: tuple[str, ...] = ("s", "m", "l", *ARCHITECTURES)


def get_architecture(variant: str) -> Architecture:
    """Look a variant up by its short name (``"s"``, ``"m"``, ``"l"``) or its TF1 name.

    Args:
        variant: ``"s"``, ``"m"``, ``"l"`` or ``"spaghettinet_edgetpu_s"`` etc. (case-insensitive).

    Returns:
        The :class:`Architecture`.

    Raises:
        UsageError: for any other name, listing the valid ones.

    Example:
        >>> get_architecture("m").name
        'spaghettinet_edgetpu_m'
    """
    key = str(variant).strip().lower()
    if key in ("s", "m", "l"):
        key = f"spaghettinet_edgetpu_{key}"
    if key not in ARCHITECTURES:
        raise UsageError(
            f"unknown SpaghettiNet variant {variant!r}; valid variants: {', '.join(VARIANT_NAMES)}"
        )
    return ARCHITECTURES[key]
