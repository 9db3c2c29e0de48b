"""What the benchmark measures, in one place: the servers (how to start them) and the scenarios (what to send).

Commands and environments are templates: `{python}` is the interpreter running the harness, `{port}` a free
port on 127.0.0.1 (and `{grpc_port}` another, for the service's gRPC server) and `{model_dir}` the model
repository given with `--model-dir`. Every server runs as one
process with one worker, started from the repository root (or, for a baseline twin, from a worktree of the
baseline's commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

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
    # The folder the server runs in and `required_file` is looked for in; None: the harness's own repository.
    repository_root: Path | None = None


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    server: str
    description: str
    path: str
    # A key of bench.payloads.build_payloads(): json, png-multipart, canvas-data-url, json-batch64, json-batch256, ...
    payload: str
    # The connection counts this scenario runs at; None: the run's --concurrency levels.
    concurrency_levels: tuple[int, ...] | None = None
    # Refusals (non-2xx responses) are part of the scenario and do not flag it; connection errors still do.
    refusals_expected: bool = False
    # "http" (wrk or httpx, on the server's port) or "grpc" (h2load, on its gRPC port; `path` is /service/method).
    transport: str = "http"
    # Also measured on the baseline's code with --baseline (not for what the baseline cannot serve).
    has_baseline: bool = True


def uvicorn_command(application: str) -> tuple[str, ...]:
    return ("{python}", "-m", "uvicorn", application, "--host", HOST, "--port", "{port}", "--no-access-log")


def uvicorn_factory_command(parser: str, *options: str) -> tuple[str, ...]:
    """The service's app on plain uvicorn with the given HTTP parser: none of the service's connection guard."""
    return (
        "{python}",
        "-m",
        "uvicorn",
        "--factory",
        "service.app:create_app",
        "--http",
        parser,
        *options,
        "--host",
        HOST,
        "--port",
        "{port}",
        "--no-access-log",
    )


SERVICE_COMMAND = ("{python}", "-m", "service", "--host", HOST, "--port", "{port}", "--model-dir", "{model_dir}")
# The gRPC port by environment, which a baseline's code from before gRPC ignores (it has no --grpc-port flag).
SERVICE_ENVIRONMENT = {"DIGIT_SERVE_GRPC_PORT": "{grpc_port}"}

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
        environment=SERVICE_ENVIRONMENT,
    ),
    "service-litert": ServerSpec(
        name="service-litert",
        description="digit-serve with DIGIT_SERVE_RUNTIME=litert (the version's exported LiteRT model)",
        command=SERVICE_COMMAND,
        ready_path="/health/ready",
        required_file="service/__main__.py",
        environment={"DIGIT_SERVE_RUNTIME": "litert", **SERVICE_ENVIRONMENT},
    ),
    "service-onnx": ServerSpec(
        name="service-onnx",
        description="digit-serve with DIGIT_SERVE_RUNTIME=onnx (the version's exported ONNX model)",
        command=SERVICE_COMMAND,
        ready_path="/health/ready",
        required_file="service/runtimes/onnx.py",
        environment={"DIGIT_SERVE_RUNTIME": "onnx", **SERVICE_ENVIRONMENT},
    ),
    "service-nometrics": ServerSpec(
        name="service-nometrics",
        description="digit-serve with DIGIT_SERVE_METRICS=false (no Prometheus metrics), to price them",
        command=SERVICE_COMMAND,
        ready_path="/health/ready",
        required_file="service/__main__.py",
        environment={"DIGIT_SERVE_METRICS": "false", **SERVICE_ENVIRONMENT},
    ),
    "service-h11": ServerSpec(
        name="service-h11",
        description="digit-serve's app on plain uvicorn with the pure-Python h11 parser (32 KiB incomplete events)",
        command=uvicorn_factory_command("h11", "--h11-max-incomplete-event-size", "32768"),
        ready_path="/health/ready",
        required_file="service/app.py",
        environment={"DIGIT_SERVE_MODEL_DIR": "{model_dir}", **SERVICE_ENVIRONMENT},
    ),
    "service-httptools": ServerSpec(
        name="service-httptools",
        description="digit-serve's app on plain uvicorn with httptools, without the service's connection guard",
        command=uvicorn_factory_command("httptools"),
        ready_path="/health/ready",
        required_file="service/app.py",
        environment={"DIGIT_SERVE_MODEL_DIR": "{model_dir}", **SERVICE_ENVIRONMENT},
    ),
    "service-repository": ServerSpec(
        name="service-repository",
        description="digit-serve serving the whole committed repository (mnist_convnet and mnist_no_maxpool)",
        command=("{python}", "-m", "service", "--host", HOST, "--port", "{port}", "--model-repository", "models"),
        ready_path="/health/ready",
        required_file="service/__main__.py",
        environment=SERVICE_ENVIRONMENT,
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

V2_INFER_PATH = "/v2/models/mnist_convnet/infer"
GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"

# The order here is the order of the run and of the table.
SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec("floor", "floor", "framework floor, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec("service-json", "service", "digit-serve, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec("service-png", "service", "digit-serve, one PNG upload (multipart)", "/predict", "png-multipart"),
    ScenarioSpec(
        "service-canvas",
        "service",
        "digit-serve, a 280x280 RGBA canvas PNG as a data: URL in JSON, as a browser sends it",
        "/predict",
        "canvas-data-url",
    ),
    ScenarioSpec("service-batch64", "service", "digit-serve, batches of 64 JSON images", "/predict", "json-batch64"),
    ScenarioSpec(
        "service-overload",
        "service",
        "digit-serve overloaded: batches of 256 JSON images, 503 refusals expected",
        "/predict",
        "json-batch256",
        concurrency_levels=(4, 64),
        refusals_expected=True,
    ),
    # What the metrics cost: the same requests to the same server with metrics off.
    ScenarioSpec(
        "nometrics-json",
        "service-nometrics",
        "digit-serve with metrics off, one 28x28 JSON image",
        "/predict",
        "json",
        has_baseline=False,
    ),
    # The standard protocols, next to the native /predict and on the same server.
    ScenarioSpec(
        "v2-json",
        "service",
        "Open Inference Protocol REST, one image as FP32 JSON data",
        V2_INFER_PATH,
        "v2-json",
        has_baseline=False,
    ),
    ScenarioSpec(
        "v2-binary-batch64",
        "service",
        "Open Inference Protocol REST, batches of 64 as binary tensor data (tritonclient's default)",
        V2_INFER_PATH,
        "v2-binary-batch64",
        has_baseline=False,
    ),
    ScenarioSpec(
        "grpc",
        "service",
        "Open Inference Protocol gRPC ModelInfer, one image (raw_input_contents)",
        GRPC_INFER_PATH,
        "grpc",
        transport="grpc",
        has_baseline=False,
    ),
    ScenarioSpec(
        "grpc-batch64",
        "service",
        "Open Inference Protocol gRPC ModelInfer, batches of 64",
        GRPC_INFER_PATH,
        "grpc-batch64",
        transport="grpc",
        has_baseline=False,
    ),
    ScenarioSpec("litert-json", "service-litert", "digit-serve on LiteRT, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec(
        "litert-batch64",
        "service-litert",
        "digit-serve on LiteRT, batches of 64 JSON images",
        "/predict",
        "json-batch64",
    ),
    ScenarioSpec("onnx-json", "service-onnx", "digit-serve on ONNX Runtime, one 28x28 JSON image", "/predict", "json"),
    ScenarioSpec(
        "onnx-batch64",
        "service-onnx",
        "digit-serve on ONNX Runtime, batches of 64 JSON images",
        "/predict",
        "json-batch64",
    ),
    ScenarioSpec("naive", "naive", "naive baseline, one 28x28 JSON image", "/predict", "json"),
)

# Not part of the default run; chosen by name with --scenarios.
EXTRA_SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec(
        "h11-json", "service-h11", "digit-serve's app on uvicorn's h11 parser, one JSON image", "/predict", "json"
    ),
    ScenarioSpec(
        "httptools-json",
        "service-httptools",
        "digit-serve's app on plain uvicorn httptools, one JSON image",
        "/predict",
        "json",
    ),
    # The seed's two models side by side on one server (its peak RSS is the memory with both loaded).
    ScenarioSpec(
        "convnet-json",
        "service-repository",
        "the seed convnet (mnist_convnet) in the whole repository, one JSON image",
        "/models/mnist_convnet/predict",
        "json",
    ),
    ScenarioSpec(
        "nomaxpool-json",
        "service-repository",
        "its no-max-pool contrast (mnist_no_maxpool), one JSON image",
        "/models/mnist_no_maxpool/predict",
        "json",
    ),
    ScenarioSpec(
        "convnet-batch64",
        "service-repository",
        "the seed convnet in the whole repository, batches of 64 JSON images",
        "/models/mnist_convnet/predict",
        "json-batch64",
    ),
    ScenarioSpec(
        "nomaxpool-batch64",
        "service-repository",
        "its no-max-pool contrast, batches of 64 JSON images",
        "/models/mnist_no_maxpool/predict",
        "json-batch64",
    ),
)

# Ratios are taken against these two scenarios of the same run.
NAIVE_SCENARIO = "naive"
FLOOR_SCENARIO = "floor"

SMOKE_SCENARIOS = ("floor", "service-json")

# With --baseline, the scenarios of these servers also run on a twin server started from the baseline's worktree.
BASELINE_SERVERS = ("service", "service-litert")  # service-onnx is new: its baseline has no such runtime
BASELINE_SUFFIX = "@base"

# Every server is also given these variables, to keep TensorFlow's start-up chatter out of the logs.
COMMON_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def scenario_names() -> list[str]:
    return [scenario.name for scenario in SCENARIOS]


def extra_scenario_names() -> list[str]:
    return [scenario.name for scenario in EXTRA_SCENARIOS]


def select_scenarios(names: list[str]) -> list[ScenarioSpec]:
    """The named scenarios in catalog order (the default ones, then the extra ones); an unknown name raises
    ValueError listing the choices."""
    known = scenario_names() + extra_scenario_names()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
    return [scenario for scenario in (*SCENARIOS, *EXTRA_SCENARIOS) if scenario.name in names]


def scenario_levels(scenario: ScenarioSpec, default_levels: tuple[int, ...]) -> tuple[int, ...]:
    """The concurrency levels a scenario runs at: its own, or the run's."""
    return scenario.concurrency_levels or default_levels


def all_levels(scenarios: list[ScenarioSpec], default_levels: tuple[int, ...]) -> list[int]:
    """Every level any of the scenarios runs at, in ascending order."""
    return sorted({level for scenario in scenarios for level in scenario_levels(scenario, default_levels)})


def with_baseline_twins(
    scenarios: list[ScenarioSpec], servers: dict[str, ServerSpec], worktree: Path, label: str
) -> tuple[list[ScenarioSpec], dict[str, ServerSpec]]:
    """The scenarios with a `<name>@base` twin right after each one of a BASELINE_SERVERS server, and the servers
    with a `<server>@base` twin right after each of those: the same command and environment, run from `worktree`.

    A twin follows its original in both orders, so the two are started one after the other and measured one
    after the other within every repeat, and whatever else the machine does affects both alike.
    """
    twinned = {
        scenario.server for scenario in scenarios if scenario.server in BASELINE_SERVERS and scenario.has_baseline
    }
    twin_servers: dict[str, ServerSpec] = {}
    for name, spec in servers.items():
        twin_servers[name] = spec
        if name in twinned:
            twin_servers[name + BASELINE_SUFFIX] = replace(
                spec,
                name=name + BASELINE_SUFFIX,
                description=f"{spec.description}; baseline {label}",
                repository_root=worktree,
            )
    twin_scenarios: list[ScenarioSpec] = []
    for scenario in scenarios:
        twin_scenarios.append(scenario)
        if scenario.server in twinned and scenario.has_baseline:
            twin_scenarios.append(
                replace(
                    scenario,
                    name=scenario.name + BASELINE_SUFFIX,
                    server=scenario.server + BASELINE_SUFFIX,
                    description=f"{scenario.description} (baseline {label})",
                )
            )
    return twin_scenarios, twin_servers
