"""A stand-in for genai_worker.serve whose first process raises OpenVINO's infer fault (genai.py's doc) on its
first call; every later process is the real one. Spawned children import it by name, so it stays light."""

import os
from pathlib import Path

from gpt2compress.runtimes.openvino.genai_worker import serve

INFER_FAULT = ("Exception from src/inference/src/cpp/infer_request.cpp:224:\n"
               "Exception from src/plugins/intel_cpu/src/node.cpp:794:\n"
               "[cpu]reshape: the shape of input data (3.1.40) conflicts with the reshape pattern (-8388608.40)\n")


def serve_flaky_once(conn, *args):
    """FLAKY_GENAI_FLAG names a file: absent, this process is the flaky one (and creates it)."""
    flag = Path(os.environ["FLAKY_GENAI_FLAG"])
    if flag.exists():
        return serve(conn, *args)
    flag.touch()
    conn.send(("ok", None))
    while conn.recv() is not None:
        conn.send(("raise", RuntimeError(INFER_FAULT)))
    os._exit(0)
