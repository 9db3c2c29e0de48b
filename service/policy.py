"""Which versions of each model to serve: TF Serving's version policies, read from the repository's serving.toml.

    [models.mnist_convnet]
    policy = { latest = 2 }            # the two highest versions (the default: { latest = 1 })
    labels = { stable = 1, canary = 2 }

    [models.mnist_no_maxpool]
    policy = "all"                     # or { specific = [1, 3] }

The file is optional; a model it does not name is served with `latest = 1`. An unknown key, a wrong type or an
impossible policy is a PolicyError whose message is one line naming the file and the problem.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SERVING_FILE = "serving.toml"


class PolicyError(Exception):
    """The serving configuration cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latest(_Strict):
    latest: int = Field(ge=1, description="Serve the N highest versions.")


class Specific(_Strict):
    specific: list[int] = Field(min_length=1, description="Serve exactly these versions.")

    @model_validator(mode="after")
    def _positive(self) -> Specific:
        if any(version < 1 for version in self.specific):
            raise ValueError(f"versions are positive integers, got {self.specific}")
        return self


class ModelPolicy(_Strict):
    policy: Latest | Specific | Literal["all"] = Latest(latest=1)
    labels: dict[str, int] = Field(default_factory=dict)

    @field_validator("policy", mode="before")
    @classmethod
    def _one_of_three(cls, value: object) -> object:
        """Name the three forms, instead of pydantic's error for each member of the union."""
        if value == "all" or isinstance(value, Latest | Specific):
            return value
        if isinstance(value, dict) and len(value) == 1:
            key, number = next(iter(value.items()))
            if key == "latest" and isinstance(number, int) and not isinstance(number, bool):
                if number < 1:
                    raise ValueError(f"latest = {number} serves nothing; it must be at least 1")
                return Latest(latest=number)
            if key == "specific" and isinstance(number, list):
                if not number or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in number):
                    raise ValueError(f"specific = {number} must list one or more positive version numbers")
                return Specific(specific=number)
        raise ValueError(f'must be "all", {{latest = N}} or {{specific = [N, ...]}}, got {value!r}')

    @model_validator(mode="after")
    def _labels_possible(self) -> ModelPolicy:
        for label, version in self.labels.items():
            if not label.replace("_", "").replace("-", "").isalnum() or not label.isascii():
                raise ValueError(f"label {label!r} must be letters, digits, '-' or '_'")
            if version < 1:
                raise ValueError(f"label {label!r} names version {version}; versions are positive integers")
            if isinstance(self.policy, Specific) and version not in self.policy.specific:
                raise ValueError(
                    f"label {label!r} names version {version}, which the policy {self.policy.specific} never serves"
                )
        return self

    def select(self, versions: Iterable[int]) -> set[int]:
        """The versions this policy aspires to serve, out of those on disk."""
        present = sorted(set(versions))
        if self.policy == "all":
            return set(present)
        if isinstance(self.policy, Latest):
            return set(present[-self.policy.latest :])
        return set(present) & set(self.policy.specific)

    def describe(self) -> str | dict[str, object]:
        """As written in serving.toml: "all", {"latest": N} or {"specific": [...]}."""
        return "all" if self.policy == "all" else self.policy.model_dump()


DEFAULT_POLICY = ModelPolicy()


class ServingConfig(_Strict):
    models: dict[str, ModelPolicy] = Field(default_factory=dict)

    def for_model(self, name: str) -> ModelPolicy:
        return self.models.get(name, DEFAULT_POLICY)


def read_serving_config(path: Path) -> ServingConfig:
    """The configuration in `path`, or the default one when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ServingConfig()
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(path, f"unreadable: {error}") from None
    try:
        return ServingConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(path, f"not valid TOML: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise PolicyError(path, f"{where}: {message.removeprefix('Value error, ')}") from None
