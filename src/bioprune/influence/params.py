"""Which parameter tensors are scored (the set ``P`` of method.md section 4).

Tensors are named exactly as in ``model.named_parameters()`` of the HF model,
which lists a tied tensor once, under its first name: the ESM LM-head decoder
is tied to ``esm.embeddings.word_embeddings.weight`` and goes by that name.
Its per-example gradient is the *total* gradient of the tensor (decoder use
plus embedding use), as for any parameter.

Specs (``--params``):

- ``all``: every tensor of the encoder and LM head (the contact-prediction
  head is never reached by the MLM loss and is always left out);
- ``lm_head``: the tensors named ``lm_head.*`` (dense, layer norm, output
  bias; the tied decoder is the word embedding and is not among them);
- ``layers:A:B``: encoder layers ``A <= i < B`` (Python slice; ``layers:4:``
  means from layer 4 to the last, ``layers:3`` layer 3 only);
- anything else: a regular expression searched in each name.

Left out whatever the spec says: the contact head (never reached by the MLM
loss) and, in models with learned absolute positions (RNA-FM, ESM-1b), the
attention *key* biases: a key bias adds ``q . b`` to every score of a query
row, which the softmax ignores, so their gradient is zero in exact arithmetic
and what float arithmetic leaves is rounding noise (about 1e-12 of the other
gradients) that eq. 11 would normalise into spurious O(1) terms. With rotary
positions the key bias is rotated per position and does matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["ParameterSelection", "select_parameters", "stage_of"]

#: Tensors the MLM loss never reaches (ESM's contact-prediction head).
UNREACHED_PREFIXES = ("esm.contact_head.",)
_LAYER = re.compile(r"^esm\.encoder\.layer\.(\d+)\.")
_KEY_BIAS = re.compile(r"\.attention\.self\.key\.bias$")


@dataclass
class ParameterSelection:
    """The scored tensors of a model.

    Attributes
    ----------
    spec : the ``--params`` text it came from.
    names : scored tensor names, in ``named_parameters()`` order.
    shapes : name -> shape.
    excluded : name -> reason, for tensors the spec chose but that are not scored.
    """

    spec: str
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        """Total number of scored scalar parameters."""
        total = 0
        for name in self.names:
            n = 1
            for d in self.shapes[name]:
                n *= d
            total += n
        return total

    def restrict(self, names: list[str], reason: str) -> ParameterSelection:
        """A copy keeping only ``names``; the others are excluded with ``reason``."""
        keep = set(names)
        excluded = dict(self.excluded)
        for n in self.names:
            if n not in keep:
                excluded[n] = reason
        return ParameterSelection(
            spec=self.spec,
            names=[n for n in self.names if n in keep],
            shapes={n: s for n, s in self.shapes.items() if n in keep},
            excluded=excluded,
        )

    def describe(self) -> str:
        """One line: count and size of the scored tensors."""
        return (
            f"{len(self.names)} tensors, {self.numel:,} parameters "
            f"({self.numel * 4 / 2**20:.1f} MiB as float32) [--params {self.spec}]"
        )


def _matcher(spec: str, num_layers: int):
    s = spec.strip()
    if s == "all":
        return lambda name: True
    if s == "lm_head":
        return lambda name: name.startswith("lm_head.")
    if s.startswith("layers:"):
        parts = s.split(":")[1:]
        try:
            if len(parts) == 1:
                lo = int(parts[0])
                hi = lo + 1
            elif len(parts) == 2:
                lo = int(parts[0]) if parts[0] else 0
                hi = int(parts[1]) if parts[1] else num_layers
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"--params {spec!r}: expected layers:A:B with integers (e.g. layers:0:6)"
            ) from None
        if not 0 <= lo < hi <= num_layers:
            raise ValueError(
                f"--params {spec!r}: the model has encoder layers 0..{num_layers - 1}; "
                "layers:A:B needs 0 <= A < B <= number of layers"
            )

        def in_layers(name: str) -> bool:
            m = _LAYER.match(name)
            return m is not None and lo <= int(m.group(1)) < hi

        return in_layers
    try:
        pattern = re.compile(s)
    except re.error as exc:
        raise ValueError(f"--params {spec!r} is not a valid regular expression: {exc}") from None
    return lambda name: pattern.search(name) is not None


def select_parameters(model, spec: str = "all") -> ParameterSelection:
    """Resolve a ``--params`` spec against a model.

    Raises
    ------
    ValueError
        when the spec is malformed or selects no tensor the MLM loss reaches.
    """
    num_layers = int(getattr(model.config, "num_hidden_layers", 0))
    rotary = getattr(model.config, "position_embedding_type", "absolute") == "rotary"
    match = _matcher(spec, num_layers)
    names: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    excluded: dict[str, str] = {}
    for name, param in model.named_parameters():
        if not match(name):
            continue
        if name.startswith(UNREACHED_PREFIXES):
            excluded[name] = "not reached by the MLM loss"
            continue
        if not rotary and _KEY_BIAS.search(name):
            excluded[name] = "zero gradient in exact arithmetic (softmax ignores a key bias)"
            continue
        names.append(name)
        shapes[name] = tuple(param.shape)
    if not names:
        raise ValueError(
            f"--params {spec!r} selects no parameter the MLM loss reaches; "
            "use all, lm_head, layers:A:B or a regex over names such as "
            "'esm.encoder.layer.0.attention'"
        )
    return ParameterSelection(spec=spec, names=names, shapes=shapes, excluded=excluded)


def stage_of(name: str) -> int:
    """Position of a tensor's stage in the forward pass of an ESM MLM.

    Stages: 0 embeddings, ``1 + i`` encoder layer ``i``, then (large numbers)
    the final encoder layer norm and the LM head. Backpropagation only needs to
    reach the earliest stage that holds a scored tensor.
    """
    if name.startswith("esm.embeddings."):
        return 0
    m = _LAYER.match(name)
    if m:
        return 1 + int(m.group(1))
    if name.startswith("esm.encoder.emb_layer_norm_after."):
        return 1_000_000
    if name.startswith("lm_head."):
        return 1_000_001
    raise ValueError(f"parameter {name!r} is not part of an ESM masked-LM stage")
