"""The serving contracts of the platforms that start `IMAGE serve`: where the model is, which port and routes.

- Vertex AI endpoints (custom container): AIP_STORAGE_URI is the model's gs:// folder (the artifact URI given to
  `gcloud ai models upload`), AIP_HTTP_PORT the port, AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE the routes it calls.
- SageMaker endpoints: the container runs as `IMAGE serve`, with model.tar.gz unpacked under /opt/ml/model
  (SAGEMAKER_BASE_DIR moves the root, as for training); numbered versions there are TensorFlow Serving's layout,
  which our SageMaker training writes (model/1/), and the highest one is served. Port 8080, or
  SAGEMAKER_BIND_TO_PORT in an inference pipeline; routes GET /ping and POST /invocations.
- `docker run -p 8080:8080 IMAGE serve --model_dir=...`: the flags.
SageMaker passes no arguments to `serve`, only environment variables: every `serve` flag can also be given as
SERVE_<FLAG NAME IN CAPITALS> (SERVE_MAX_REQUEST_BYTES=6291456); a flag on the command line wins.
"""

import dataclasses
import os

from platforms import sagemaker

DEFAULT_PORT = 8080
SAGEMAKER_HEALTH_ROUTE, SAGEMAKER_PREDICT_ROUTE = "/ping", "/invocations"
FLAG_VARIABLE_PREFIX = "SERVE_"


@dataclasses.dataclass(frozen=True)
class ServingPlacement:
    model_source: str  # a folder, local or gs://, that holds the model or numbered versions of it
    model_source_named_by: str  # what named it, for messages: the flag, AIP_STORAGE_URI or SageMaker's folder
    port: int
    health_routes: tuple  # GET: 200 once the model is loaded
    predict_routes: tuple  # POST: instances in, predictions out


def placement(model_dir: str | None, port: int | None, env=None) -> ServingPlacement:
    """Where this server finds its model and what it listens on: the flags first, then Vertex AI's variables,
    then SageMaker's. SageMaker's routes are always served (they cost nothing and make `docker run -p` users
    and SageMaker alike find the server where they expect it); Vertex's are added when it names them."""
    env = os.environ if env is None else env
    if model_dir:
        source, named_by = model_dir, "--model_dir"
    elif env.get("AIP_STORAGE_URI"):
        source, named_by = env["AIP_STORAGE_URI"], "AIP_STORAGE_URI"
    else:
        source = f"{sagemaker.base_dir()}/model"
        named_by = "SageMaker's model folder (no --model_dir, no AIP_STORAGE_URI)"
    if port is None:
        port = int(env.get("AIP_HTTP_PORT") or env.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT)
    health = [SAGEMAKER_HEALTH_ROUTE, env.get("AIP_HEALTH_ROUTE")]
    predict = [SAGEMAKER_PREDICT_ROUTE, env.get("AIP_PREDICT_ROUTE")]
    return ServingPlacement(model_source=source.rstrip("/") or "/", model_source_named_by=named_by, port=port,
                            health_routes=tuple(dict.fromkeys(r for r in health if r)),
                            predict_routes=tuple(dict.fromkeys(r for r in predict if r)))


def flag_defaults_from_environment(flag_names, env=None) -> dict:
    """{flag name: text} of the SERVE_<NAME> variables that are set."""
    env = os.environ if env is None else env
    return {name: env[f"{FLAG_VARIABLE_PREFIX}{name.upper()}"] for name in flag_names
            if env.get(f"{FLAG_VARIABLE_PREFIX}{name.upper()}")}
