"""The serving benchmark's hand-written Python server: FastAPI + onnxruntime answering MLflow's
`POST /invocations` with an `{"inputs": [[...], ...]}` body the way `mlflow models serve` does
for an ONNX model (`{"predictions": {"label": [...], "probabilities": [[...], ...]}}`), plus
`GET /ping`. It stands for what a team writes when it skips MLflow's server: no other input
formats, no signature checks.

    MLMODEL_DIR=tests/fixtures/models/mlflow_logreg_breast_cancer \
      uvicorn --app-dir bench/serving fastapi_server:app --port 5303 [--workers 2]
"""

import os

import numpy as np
import onnxruntime
from fastapi import FastAPI
from pydantic import BaseModel

options = onnxruntime.SessionOptions()
# One thread per session, as slipway runs it: ONNX Runtime's default pool (one thread per core)
# spins for batches this small, and with two uvicorn workers the pools would fight for 2 cores.
options.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(
    os.path.join(os.environ["MLMODEL_DIR"], "model.onnx"),
    options,
    providers=["CPUExecutionProvider"],
)
input_name = session.get_inputs()[0].name
output_names = [output.name for output in session.get_outputs()]

app = FastAPI()


class Invocation(BaseModel):
    inputs: list[list[float]]


def as_json(value):
    # float32 arrays become Python floats (their float64 expansion), as MLflow prints them;
    # a ZipMap output is already a list of dicts.
    return value.tolist() if isinstance(value, np.ndarray) else value


@app.get("/ping")
async def ping():
    return ""


# `async def` runs on the event loop: the model takes microseconds, less than the hand-off to
# FastAPI's thread pool that a plain `def` endpoint would pay on every request.
@app.post("/invocations")
async def invocations(body: Invocation):
    outputs = session.run(None, {input_name: np.asarray(body.inputs, dtype=np.float32)})
    if len(outputs) == 1:
        return {"predictions": as_json(outputs[0])}
    return {"predictions": {name: as_json(value) for name, value in zip(output_names, outputs)}}


if __name__ == "__main__":
    # `uvicorn --workers N` binds the listener itself with proto 0, so asyncio never sets
    # TCP_NODELAY on accepted connections and each keep-alive request after the first waits
    # ~40 ms for a delayed ACK (Kludex/uvicorn#3149, open as of uvicorn 0.54). Linux copies
    # TCP_NODELAY from a listener to the connections it accepts, so set it there, then run
    # uvicorn's own command line: `python fastapi_server.py <uvicorn arguments>`.
    import socket

    from uvicorn.config import Config
    from uvicorn.main import main

    bind_socket = Config.bind_socket

    def bind_socket_nodelay(config):
        sock = bind_socket(config)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    Config.bind_socket = bind_socket_nodelay
    main()
