"""Shared pieces of the config sections: the strict frozen base and field types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from genomes import ACTIVATIONS, DistanceConfig, MutationConfig

__all__ = [
    "DC",
    "LOSS_FOR_KIND",
    "MAX_WIDTH",
    "MC",
    "Activation",
    "Activations",
    "KeyedError",
    "Section",
    "as_tuple",
    "rate",
]

#: Defaults of the genomes operators, mirrored by the sections.
MC = MutationConfig()
DC = DistanceConfig()
LOSS_FOR_KIND = {"classification": "cross_entropy", "regression": "mse"}
#: Widest node a config may ask for. The batched engine holds every member's
#: weights and Adam state at once: 64 members with one 4096 x 4096 edge each are
#: 64 * 16.8M * 4 B * 3 (weights, two moments) = 13 GB, the most a large GPU takes;
#: a wider width runs out of memory before the first generation ends.
MAX_WIDTH = 4096


class KeyedError(ValueError):
    """A cross-field rule broken at ``key`` (dotted, relative to the model)."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(f"{key}: got {value!r}, {expected}")
        self.key, self.value, self.expected = key, value, expected


def as_tuple(v: Any) -> Any:
    """Return a list as a tuple, anything else unchanged."""
    # TOML arrays arrive as lists; strict mode would reject them for tuple fields.
    return tuple(v) if isinstance(v, list) else v


def _activation(v: str) -> str:
    if v not in ACTIVATIONS:
        raise ValueError(f"expected one of {', '.join(map(repr, ACTIVATIONS))}")
    return v


#: An activation name from genomes.ACTIVATIONS.
Activation = Annotated[str, AfterValidator(_activation)]


def _one_or_more_activations(v: Any) -> str | tuple[str, ...]:
    if isinstance(v, str):
        return _activation(v)
    if isinstance(v, list | tuple) and v and all(isinstance(a, str) for a in v):
        return tuple(_activation(a) for a in v)
    raise ValueError(
        f"expected an activation name or a non-empty list of them ({', '.join(map(repr, ACTIVATIONS))})"
    )


#: One activation name, or a non-empty list of them (a tuple once validated).
Activations = Annotated[str | tuple[str, ...], PlainValidator(_one_or_more_activations)]


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys forbidden, strict types."""

    # strict: TOML is typed, so "3" for an integer is a mistake, not a conversion.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


def rate(why: str, default: float) -> Any:
    """Return a probability field in [0, 1] with its reason as description."""
    return Field(default, ge=0.0, le=1.0, description=why)
