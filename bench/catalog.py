"""What the benchmark measures, in one place: the servers (how to start them) and the scenarios (what to send).

Commands and environments are templates: `{python}` is the interpreter running the harness, `{port}` a free
port on 127.0.0.1 and `{model_dir}` the model repository given with `--model-dir`. Every server runs as one
process with one worker, started from the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    description: str
    command: tuple[str, ...]
    ready_path: str
    # A file, relative to the repository root, that must exist for the server to be started at all.
    required_file: str
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    server: str
    description: str
    path: str
    # A key of bench.payloads.build_payloads(): json, png-multipart or json-batch64.
    payload: str


def uvicorn_command(application: str) -> tuple[str, ...]:
    return ("{python}", "-m", "uvicorn", application, "--host", HOST, "--port", "{port}", "--no-access-log")


SERVICE_COMMAND = ("{python}", "-m", "service", "--host", HOST, "--port", "{port}", "--model-dir", "{model_dir}")

SERVERS: dict[str, ServerSpec] = {
    "floor": ServerSpec(
        name="floor",
        description="FastAPI async route validating the JSON body with pydantic, returning a constant",
        command=uvicorn_command("bench.servers.floor:app"),
        ready_path="/health",
        required_file="bench/servers/floor.py",
    ),
    "service": ServerSpec(
        name="service",
        description="digit-serve, default settings (the SavedModel signature runs the model)",
        command=SERVICE_COMMAND,
        ready_path="/health/ready",
        required_file="service/__main__.py",
    ),
    "service-litert": ServerSpec(
        name="service-litert",
        description="digit-serve with DIGIT_SERVE_RUNTIME=litert (converted from the SavedModel at start-up)",
        command=SERVICE_COMMAND,
        ready_path="/health/ready",
        required_file="service/__main__.py",
        environment={"DIGIT_SERVE_RUNTIME": "litert"},
    ),
    "naive": ServerSpec(
        name="naive",
        description="the seed's Keras model with model.predict inside an async def route",
        command=uvicorn_command("bench.servers.naive:app"),
        ready_path="/health",
        required_file="bench/servers/naive.py",
        environment={"BENCH_MODEL_DIR": "{model_dir}"},
    ),
}

# The order here is the order of the run and of the table.
SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec("floor", "floor", "framework floor, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec("service-json", "service", "digit-serve, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec("service-png", "service", "digit-serve, one PNG upload (multipart)", "/predict", "png-multipart"),
    ScenarioSpec("service-batch64", "service", "digit-serve, batches of 64 JSON images", "/predict", "json-batch64"),
    ScenarioSpec("litert-json", "service-litert", "digit-serve on LiteRT, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec(
        "litert-batch64",
        "service-litert",
        "digit-serve on LiteRT, batches of 64 JSON images",
        "/predict",
        "json-batch64",
    ),
    ScenarioSpec("naive", "naive", "naive baseline, one 28x28 JSON image", "/predict", "json"),
)

# Ratios are taken against these two scenarios of the same run.
NAIVE_SCENARIO = "naive"
FLOOR_SCENARIO = "floor"

SMOKE_SCENARIOS = ("floor", "service-json")

# Every server is also given these variables, to keep TensorFlow's start-up chatter out of the logs.
COMMON_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def scenario_names() -> list[str]:
    return [scenario.name for scenario in SCENARIOS]


def select_scenarios(names: list[str]) -> list[ScenarioSpec]:
    """The named scenarios in catalog order; an unknown name raises ValueError listing the choices."""
    unknown = sorted(set(names) - set(scenario_names()))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from: {', '.join(scenario_names())}")
    return [scenario for scenario in SCENARIOS if scenario.name in names]
