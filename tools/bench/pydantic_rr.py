#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Python client as UFO writes it — pydantic v2 models — doing aip-bench rr's workload.

python_baseline.py builds frames with json.dumps; UFO's own AIP code instead builds a pydantic
ClientMessage and sends model_dump_json() (every field, unset ones as null), and turns each
received frame into a ServerMessage with model_validate_json(). This client does the same with
models of its own whose fields and types mirror UFO's aip/messages.py (ClientMessage,
ServerMessage, Command, Result and their enums), over the `websockets` library, with the
listener-task + dict-of-futures shape of python_baseline.py (one asyncio listener task, a
request registers its future before its frame leaves, the requester waits with a timeout and
always removes its entry; C workers each keep one request in flight). Frames go out as text.

Interpreter: pydantic 2 is needed, and Debian 12 ships pydantic 1 only, so this runs under the
first `python3` on PATH that has pydantic 2 (on the project's machines: pyenv's 3.11, which
has pydantic 2 but not websockets). When `import websockets` fails there, Debian's
python3-websockets (10.4, pure Python on Debian 12 as for python_baseline.py) is taken from
/usr/lib/python3/dist-packages, appended to sys.path (last, so nothing else is shadowed).

    python3 tools/bench/pydantic_rr.py --server ws://127.0.0.1:5000/ws --target DEVICE
        [--inflight 64] (--requests N | --seconds S) [--token T] [--timeout SECONDS]

Prints one JSON line like aip-bench rr's (mode "pydantic"; cpu_s is this process's user+system
CPU, start-up and imports included, as aip-bench's). Exit 0 only when errors and mismatched
are 0; 1 otherwise; 2 on a usage error; 3 when pydantic 2 or websockets is missing.
"""
import enum
import sys
from typing import Any, Dict, List, Literal, Optional

try:
    import pydantic
    from pydantic import BaseModel
except ImportError:
    print("pydantic_rr: pydantic is not installed for %s" % sys.executable, file=sys.stderr)
    sys.exit(3)
if not pydantic.VERSION.startswith("2."):
    print("pydantic_rr: pydantic 2 is needed, %s has %s" % (sys.executable, pydantic.VERSION),
          file=sys.stderr)
    sys.exit(3)
try:
    import websockets
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-websockets
    try:
        import websockets
    except ImportError:
        print("pydantic_rr: websockets is missing (apt-get install python3-websockets)",
              file=sys.stderr)
        sys.exit(3)


# ---- the AIP message models (fields and types as UFO's aip/messages.py) ----------------------

class TaskStatus(str, enum.Enum):
    CONTINUE = "continue"
    COMPLETED = "completed"
    FAILED = "failed"
    OK = "ok"
    ERROR = "error"


class ClientType(str, enum.Enum):
    DEVICE = "device"
    CONSTELLATION = "constellation"


class ClientMessageType(str, enum.Enum):
    TASK = "task"
    HEARTBEAT = "heartbeat"
    COMMAND_RESULTS = "command_results"
    ERROR = "error"
    REGISTER = "register"
    TASK_END = "task_end"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class ServerMessageType(str, enum.Enum):
    TASK = "task"
    HEARTBEAT = "heartbeat"
    TASK_END = "task_end"
    COMMAND = "command"
    ERROR = "error"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class ResultStatus(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"
    NONE = "none"


class Command(BaseModel):
    tool_name: str
    parameters: Optional[Dict[str, Any]] = None
    tool_type: Literal["data_collection", "action"]
    call_id: Optional[str] = None


class Result(BaseModel):
    status: ResultStatus
    error: Optional[str] = None
    result: Any = None
    namespace: Optional[str] = None
    call_id: Optional[str] = None


class ClientMessage(BaseModel):
    type: ClientMessageType
    status: TaskStatus
    client_type: ClientType = ClientType.DEVICE
    session_id: Optional[str] = None
    task_name: Optional[str] = None
    client_id: Optional[str] = None
    target_id: Optional[str] = None
    request: Optional[str] = None
    action_results: Optional[List[Result]] = None
    timestamp: Optional[str] = None
    request_id: Optional[str] = None
    prev_response_id: Optional[str] = None
    error: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None


class ServerMessage(BaseModel):
    type: ServerMessageType
    status: TaskStatus
    user_request: Optional[str] = None
    agent_name: Optional[str] = None
    process_name: Optional[str] = None
    root_name: Optional[str] = None
    actions: Optional[List[Command]] = None
    messages: Optional[List[str]] = None
    error: Optional[str] = None
    session_id: Optional[str] = None
    task_name: Optional[str] = None
    timestamp: Optional[str] = None
    response_id: Optional[str] = None
    result: Optional[Any] = None


# ---- the client (rr_harness.py: the listener + futures shape and the measurement) ---------------

import rr_harness  # noqa: E402 - after the interpreter checks above
from rr_harness import now_iso  # noqa: E402


class PydanticCodec(rr_harness.Codec):
    def register(self, client_id, target):
        return ClientMessage(
            type=ClientMessageType.REGISTER, status=TaskStatus.OK,
            client_type=ClientType.CONSTELLATION, client_id=client_id, target_id=target,
            metadata={"type": "constellation_client", "targeted_device_id": target,
                      "registration_time": now_iso()},
            timestamp=now_iso()).model_dump_json()

    def device_info_request(self, client_id, target, request_id):
        return ClientMessage(
            type=ClientMessageType.DEVICE_INFO_REQUEST, status=TaskStatus.OK,
            client_type=ClientType.CONSTELLATION, client_id=client_id, target_id=target,
            request_id=request_id, timestamp=now_iso()).model_dump_json()

    def read(self, raw):
        msg = ServerMessage.model_validate_json(raw)
        return msg.type.value, msg.response_id, msg.error, msg

    def answer_ok(self, msg, request_id):
        return msg.response_id == request_id and isinstance(msg.result, dict)


if __name__ == "__main__":
    sys.exit(rr_harness.main(__doc__, "pydantic_rr", websockets, PydanticCodec(), "pydantic",
                             extra={"pydantic": pydantic.VERSION,
                                    "websockets": websockets.__version__},
                             catch=True))
