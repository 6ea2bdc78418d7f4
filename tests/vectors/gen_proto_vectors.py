#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the protobuf (.bin) test vectors of tests/vectors/ (see README.md there).

Run from anywhere with /usr/bin/python3; it rewrites the .bin files next to this script and
nothing else. The frames are encoded BY HAND from the field numbers of proto/aip.proto, on
purpose: no protobuf library is involved, so the vectors check the C codec against the schema
rather than against itself. The expected outcome of every malformed / invalid-action frame is
in the MANIFEST.tsv of its folder (edit both together); every valid frame valid/<env>/X.bin has
a JSON twin valid/<env>/X.json that must decode to the same message.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- wire format ---------------------------------------------------------------------------

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def varint(n):
    if n < 0:
        n &= (1 << 64) - 1  # negative int32/int64 enums are ten bytes, as protobuf sends them
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return tag(field, VARINT) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return tag(field, LEN) + varint(len(data)) + data


def f_msg(field, *parts):
    return f_bytes(field, b"".join(parts))


# ---- schema (proto/aip.proto) --------------------------------------------------------------

# enum MessageType
REGISTER, HEARTBEAT, TASK, COMMAND, COMMAND_RESULTS, TASK_END = 1, 2, 3, 4, 5, 6
DEVICE_INFO_REQUEST, DEVICE_INFO_RESPONSE, ERROR = 7, 8, 9
# enum Status
CONTINUE, COMPLETED, FAILED, OK, STATUS_ERROR = 1, 2, 3, 4, 5
# enum ClientType
DEVICE, CONSTELLATION = 0, 1
# enum ToolType
DATA_COLLECTION, ACTION = 1, 2
# enum ResultStatus
SUCCESS, FAILURE, SKIPPED, NONE = 1, 2, 3, 4

# message ClientMessage
C_TYPE, C_STATUS, C_CLIENT_TYPE, C_SESSION_ID, C_TASK_NAME, C_CLIENT_ID, C_TARGET_ID = 1, 2, 3, 4, 5, 6, 7
C_REQUEST, C_ACTION_RESULTS, C_TIMESTAMP, C_REQUEST_ID, C_PREV_RESPONSE_ID = 8, 9, 10, 11, 12
C_ERROR, C_METADATA_JSON = 13, 14
# message ServerMessage
S_TYPE, S_STATUS, S_USER_REQUEST, S_AGENT_NAME, S_PROCESS_NAME, S_ROOT_NAME = 1, 2, 3, 4, 5, 6
S_ACTIONS, S_MESSAGES, S_ERROR, S_SESSION_ID, S_TASK_NAME, S_TIMESTAMP = 7, 8, 9, 10, 11, 12
S_RESPONSE_ID, S_RESULT_JSON = 13, 14
# message Command
CMD_TOOL_NAME, CMD_PARAMETERS_JSON, CMD_TOOL_TYPE, CMD_CALL_ID = 1, 2, 3, 4
# message Result
R_STATUS, R_ERROR, R_RESULT_JSON, R_NAMESPACE, R_CALL_ID = 1, 2, 3, 4, 5
# CommandList / ResultList / TextList
ITEMS = 1


def command(tool_name=None, params=None, tool_type=None, call_id=None, extra=b""):
    p = b""
    if tool_name is not None:
        p += f_bytes(CMD_TOOL_NAME, tool_name)
    if params is not None:
        p += f_bytes(CMD_PARAMETERS_JSON, params)
    if tool_type is not None:
        p += f_varint(CMD_TOOL_TYPE, tool_type)
    if call_id is not None:
        p += f_bytes(CMD_CALL_ID, call_id)
    return f_bytes(ITEMS, p + extra)


def result(status=None, error=None, result_json=None, namespace=None, call_id=None):
    p = b""
    if status is not None:
        p += f_varint(R_STATUS, status)
    if error is not None:
        p += f_bytes(R_ERROR, error)
    if result_json is not None:
        p += f_bytes(R_RESULT_JSON, result_json)
    if namespace is not None:
        p += f_bytes(R_NAMESPACE, namespace)
    if call_id is not None:
        p += f_bytes(R_CALL_ID, call_id)
    return f_bytes(ITEMS, p)


def nested(levels):
    """A JSON object nested `levels` deep: levels=1 is {}."""
    t = "{}"
    for _ in range(levels - 1):
        t = '{"d":' + t + "}"
    return t


def client_head(t, status=OK):
    return f_varint(C_TYPE, t) + f_varint(C_STATUS, status)


def server_head(t, status=OK):
    return f_varint(S_TYPE, t) + f_varint(S_STATUS, status)


DEV = "linux-agent-7f3a"

# ---- the vectors ---------------------------------------------------------------------------

MALFORMED = {
    # framing
    "proto_client_empty.bin": b"",
    "proto_server_empty.bin": b"",
    "proto_client_garbage.bin": bytes.fromhex("ff ff ff ff ff ff ff ff ff ff ff 01 9a 3c 7e"),
    "proto_server_garbage.bin": bytes.fromhex("0f 6d 2c 11 e8 a4 00 07 bb"),  # wire type 7 at field 1
    "proto_client_truncated_varint.bin": bytes([0x08, 0x82]),  # type = <varint cut short>
    "proto_server_truncated_length.bin": server_head(HEARTBEAT) + tag(S_SESSION_ID, LEN) + varint(20) + b"abc",
    "proto_client_truncated_tag.bin": client_head(HEARTBEAT) + bytes([0x80]),
    "proto_client_json_as_binary.bin": b'{"type":"heartbeat","status":"ok"}',
    "proto_client_wrong_wire_type.bin": f_bytes(C_TYPE, b"\x02") + f_varint(C_STATUS, OK),
    "proto_client_bad_action_results.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_bytes(C_ACTION_RESULTS, b"\x0a\x05\x08"),  # ResultList item longer than its list
    # enums
    "proto_client_type_42.bin": f_varint(C_TYPE, 42) + f_varint(C_STATUS, OK),
    "proto_server_type_0.bin": f_varint(S_TYPE, 0) + f_varint(S_STATUS, OK),
    "proto_client_type_negative.bin": f_varint(C_TYPE, -1) + f_varint(C_STATUS, OK),
    "proto_client_status_99.bin": f_varint(C_TYPE, HEARTBEAT) + f_varint(C_STATUS, 99),
    "proto_client_client_type_7.bin": client_head(HEARTBEAT) + f_varint(C_CLIENT_TYPE, 7),
    # required fields and envelopes
    "proto_client_missing_type.bin": f_varint(C_STATUS, OK) + f_bytes(C_CLIENT_ID, DEV),
    "proto_server_missing_type.bin": f_varint(S_STATUS, OK) + f_bytes(S_RESPONSE_ID, "r-1"),
    "proto_client_missing_status.bin": f_varint(C_TYPE, HEARTBEAT) + f_bytes(C_CLIENT_ID, DEV),
    "proto_server_missing_status.bin": f_varint(S_TYPE, COMMAND) + f_bytes(S_SESSION_ID, "s-1")
    + f_bytes(S_RESPONSE_ID, "r-1") + f_msg(S_ACTIONS, command("t", None, ACTION, "c-1")),
    "proto_server_type_register.bin": server_head(REGISTER),
    "proto_server_type_command_results.bin": server_head(COMMAND_RESULTS, CONTINUE),
    "proto_client_type_command.bin": client_head(COMMAND, CONTINUE),
    # text fields
    "proto_client_overlong_utf8.bin": client_head(HEARTBEAT) + f_bytes(C_CLIENT_ID, b"dev\xc0\xaf"),
    "proto_client_surrogate_utf8.bin": client_head(TASK, CONTINUE) + f_bytes(C_REQUEST, b"a\xed\xa0\x80b"),
    "proto_client_lone_continuation.bin": client_head(ERROR, STATUS_ERROR) + f_bytes(C_ERROR, b"\x80oops"),
    "proto_server_truncated_utf8.bin": server_head(HEARTBEAT)
    + f_msg(S_MESSAGES, f_bytes(ITEMS, "ok"), f_bytes(ITEMS, b"\xe4\xb8")),
    "proto_client_nul_in_id.bin": client_head(HEARTBEAT) + f_bytes(C_SESSION_ID, b"abc\x00def"),
    "proto_server_nul_in_id.bin": server_head(HEARTBEAT) + f_bytes(S_RESPONSE_ID, b"\x00"),
    "proto_client_id_too_long.bin": client_head(HEARTBEAT) + f_bytes(C_CLIENT_ID, "d" * 257),
    # free-form JSON
    "proto_client_metadata_not_json.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, "{system_info: 1}"),
    "proto_client_metadata_not_object.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, "[1,2]"),
    "proto_client_metadata_empty.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, ""),
    "proto_client_metadata_too_deep.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, nested(65)),
    "proto_client_metadata_nul.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, b'{"a":"x\x00y"}'),
    "proto_server_result_bad_utf8.bin": server_head(TASK_END, COMPLETED) + f_bytes(S_RESULT_JSON, b'["caf\xe9"]'),
    "proto_server_result_not_json.bin": server_head(TASK_END, COMPLETED) + f_bytes(S_RESULT_JSON, "{'a': 1}"),
    "proto_server_result_trailing.bin": server_head(TASK_END, COMPLETED) + f_bytes(S_RESULT_JSON, "1 2"),
    "proto_server_result_dup_key.bin": server_head(DEVICE_INFO_RESPONSE)
    + f_bytes(S_RESULT_JSON, '{"cpu_count":8,"cpu_count":9}'),
    # the same message must be acceptable in both encodings: the JSON frame would nest
    # 1 (frame) + 64 levels, over the limit of 64 (see README, "known bugs")
    "proto_client_metadata_depth_64.bin": client_head(REGISTER) + f_bytes(C_METADATA_JSON, nested(64)),
    "proto_server_result_depth_64.bin": server_head(TASK_END, COMPLETED) + f_bytes(S_RESULT_JSON, nested(64)),
    "proto_client_result_depth_62.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(SUCCESS, result_json=nested(62), call_id="c-1")),
    # action_results
    "proto_client_result_missing_status.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(error="boom", call_id="c-1")),
    "proto_client_result_status_9.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(SUCCESS, call_id="c-1"), result(9, call_id="c-2")),
    "proto_client_result_bad_json.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(SUCCESS, result_json="[1,2,]", call_id="c-1")),
    "proto_client_result_nul_error.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(FAILURE, error=b"bad\x00", call_id="c-1")),
}

INVALID_ACTIONS = {
    "proto_command_mixed.bin": server_head(COMMAND, CONTINUE)
    + f_bytes(S_SESSION_ID, "s-proto-invalid") + f_bytes(S_RESPONSE_ID, "r-proto-invalid")
    + f_msg(
        S_ACTIONS,
        command("execute_command", '{"command":"true"}', ACTION, "c0"),  # valid
        command("execute_command", None, 7, "c1"),  # unknown tool_type
        command("execute_command", None, None, "c2"),  # missing tool_type
        command("execute_command", "[1]", ACTION, "c3"),  # parameters not an object
        command(b"bad\xff", None, ACTION, "c4"),  # tool_name not UTF-8
        command("execute_command", None, ACTION, b"c\x005"),  # call_id with a NUL: lost
        command(None, None, DATA_COLLECTION, "c6"),  # missing tool_name
        command("execute_command", None, 0, "c7"),  # tool_type 0 = unset
        command("get_system_info", None, DATA_COLLECTION, "c8"),  # valid
    ),
    # what json.dumps writes into parameters, and worse: each fails that action only (as in JSON)
    "proto_command_parameter_defects.bin": server_head(COMMAND, CONTINUE)
    + f_bytes(S_SESSION_ID, "s-proto-defects") + f_bytes(S_RESPONSE_ID, "r-proto-defects")
    + f_msg(
        S_ACTIONS,
        command("echo", '{"text":"ok"}', DATA_COLLECTION, "d0"),  # valid
        command("echo", '{"text":"a\\u0000b"}', DATA_COLLECTION, "d1"),  # \u0000 escape
        command("echo", '{"text":"\\ud800"}', DATA_COLLECTION, "d2"),  # lone surrogate escape
        command("echo", b'{"text":"a\xffb"}', DATA_COLLECTION, "d3"),  # not UTF-8
        command("echo", nested(70), DATA_COLLECTION, "d4"),  # nesting past 64
        command("echo", '{"a":1,"a":2}', DATA_COLLECTION, "d5"),  # duplicate key
        command("echo", '{"text":"ok"}', DATA_COLLECTION, b"d\xff6"),  # call_id not UTF-8: lost
        command("echo", '{"text":"ok"}', DATA_COLLECTION, "d7"),  # valid
    ),
}

VALID = {
    # fields out of order, a repeated scalar (last one wins), unknown fields of every wire type
    "client/heartbeat_proto_unknown_fields.bin": f_bytes(C_TIMESTAMP, "2026-11-22T06:32:12.000001+00:00")
    + f_varint(99, 12345)
    + f_bytes(C_CLIENT_ID, DEV)
    + f_bytes(100, b"\x01\x02unknown")
    + tag(101, I32) + b"\x01\x02\x03\x04"
    + tag(102, I64) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    + f_varint(C_STATUS, OK)
    + f_varint(C_TYPE, TASK)
    + f_varint(C_TYPE, HEARTBEAT),
    # JSON text with whitespace around it is kept without it; inner text verbatim
    "client/register_proto_metadata.bin": client_head(REGISTER)
    + f_varint(C_CLIENT_TYPE, CONSTELLATION)
    + f_bytes(C_CLIENT_ID, "galaxy_constellation_5b2e")
    + f_bytes(C_TARGET_ID, DEV)
    + f_bytes(C_REQUEST_ID, "")
    + f_bytes(C_METADATA_JSON, ' \n{"type": "constellation_client", "n": 32.0, "é": "\\u00e9"}\t '),
    "client/command_results_proto.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_bytes(C_SESSION_ID, "s-proto")
    + f_msg(
        C_ACTION_RESULTS,
        result(SUCCESS, result_json='{"stdout":"hi\\n","exit_code":0}', namespace="LinuxCommandExecutor", call_id="c0"),
        result(FAILURE, error="exit status 2", result_json="null", call_id="c1"),
        result(SKIPPED, error="Skipped due to previous failure (early_exit=True).", call_id="c2"),
        result(NONE, result_json=" [1, -0.5, 1e-07, 6.02E23] "),
    )
    + f_bytes(C_PREV_RESPONSE_ID, "r-proto"),
    "client/command_results_proto_empty.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS)
    + f_bytes(C_PREV_RESPONSE_ID, "r-proto-empty"),
    # a non-repeated message field sent twice is merged: its lists are concatenated
    "client/command_results_proto_split.bin": client_head(COMMAND_RESULTS, CONTINUE)
    + f_msg(C_ACTION_RESULTS, result(SUCCESS, call_id="a"))
    + f_bytes(C_PREV_RESPONSE_ID, "r-split")
    + f_msg(C_ACTION_RESULTS, result(FAILURE, error="boom", call_id="b")),
    "server/heartbeat_proto_split_messages.bin": server_head(HEARTBEAT)
    + f_msg(S_MESSAGES, f_bytes(ITEMS, "first"))
    + f_msg(S_MESSAGES, f_bytes(ITEMS, "second"), f_bytes(ITEMS, "third")),
    "server/command_proto.bin": server_head(COMMAND, CONTINUE)
    + f_msg(
        S_ACTIONS,
        command("execute_command", '{"command":"ls"}', ACTION, "c0"),
        command("get_system_info", None, DATA_COLLECTION, "c1"),
        command("type_text", "{}", ACTION),
    )
    + f_msg(S_MESSAGES)
    + f_bytes(S_RESULT_JSON, " null ")
    + f_bytes(S_RESPONSE_ID, "r-proto"),
    # JSON null may also travel as the text "null" (proto.c says so): same as an absent field
    "server/command_proto_null_params.bin": server_head(COMMAND, CONTINUE)
    + f_msg(S_ACTIONS, command("get_system_info", "null", DATA_COLLECTION, "c1"))
    + f_bytes(S_RESPONSE_ID, "r-proto-null"),
    "client/heartbeat_proto_null_metadata.bin": client_head(HEARTBEAT)
    + f_bytes(C_CLIENT_ID, DEV)
    + f_bytes(C_METADATA_JSON, " null"),
    "server/device_info_response_proto.bin": server_head(DEVICE_INFO_RESPONSE)
    + f_bytes(S_RESPONSE_ID, "q-proto")
    + f_msg(S_MESSAGES, f_bytes(ITEMS, "中文 😀"), f_bytes(ITEMS, ""))
    + f_bytes(S_RESULT_JSON, '{"device_id":"linux-agent-7f3a","memory_total_gb":32.0,"custom_metadata":{}}'),
}


def write_all():
    n = 0
    for folder, table in (("malformed", MALFORMED), ("invalid_actions", INVALID_ACTIONS), ("valid", VALID)):
        for name, data in sorted(table.items()):
            path = os.path.join(HERE, folder, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            n += 1
    print("wrote %d .bin vectors" % n)


if __name__ == "__main__":
    write_all()
