"""Drives the Open Inference Protocol's real Python clients for the mocha tests.

    python oip_clients.py descriptors CLIENT OURS.binpb   ours and CLIENT's (triton or kserve) (JSON)
    python oip_clients.py triton HOST:PORT < plan      tritonclient.grpc, step by step
    python oip_clients.py kserve HOST:PORT < plan      kserve.InferenceGRPCClient, step by step

A plan is JSON: {"steps": [{"op": ..., ...}, ...]}; the answer is JSON on stdout,
{"results": [...]}, one result per step: {"ok": true, "value": ...} or
{"ok": false, "code": "NOT_FOUND", "details": "..."}. The mocha side
(test/e2e/oip-clients.test.ts, test/envoy/open-inference.test.ts) decides what is
right; this script only speaks the clients' own APIs, the way a user would: inputs
are built from get_model_metadata alone.
"""

import asyncio
import json
import sys
import threading

import numpy as np
from google.protobuf import descriptor_pb2

NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP64": np.float64, "FP32": np.float32}


# --- descriptors ------------------------------------------------------------------


def _message(m):
    label = descriptor_pb2.FieldDescriptorProto.Label.Name
    kind = descriptor_pb2.FieldDescriptorProto.Type.Name
    return {
        "map_entry": m.options.map_entry,
        "fields": [
            {
                "name": f.name,
                "number": f.number,
                "label": label(f.label),
                "type": kind(f.type),
                "type_name": f.type_name,
                "oneof": m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
                # No json_name: it is derived from the name, and protoc leaves it out of generated code.
                "proto3_optional": f.proto3_optional,
                "default": f.default_value,
            }
            for f in m.field
        ],
        "nested": {n.name: _message(n) for n in m.nested_type},
        "enums": [e.name for e in m.enum_type],
    }


def _file(fdp):
    return {
        "name": fdp.name,
        "package": fdp.package,
        "messages": {m.name: _message(m) for m in fdp.message_type},
        "services": {
            s.name: [
                {
                    "name": x.name,
                    "input": x.input_type,
                    "output": x.output_type,
                    "client_streaming": x.client_streaming,
                    "server_streaming": x.server_streaming,
                }
                for x in s.method
            ]
            for s in fdp.service
        },
    }


def _installed(module):
    fdp = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fdp)
    return _file(fdp)


def descriptors(client, ours_path):
    """Ours and one client's: the two clients register the same `inference.*` names in
    protobuf's default pool, so one process can import only one of them."""
    if client == "triton":
        from tritonclient.grpc import service_pb2 as theirs
    else:
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as theirs

    fds = descriptor_pb2.FileDescriptorSet()
    with open(ours_path, "rb") as f:
        fds.ParseFromString(f.read())
    ours = [_file(f) for f in fds.file if f.package == "inference"]
    return {"ours": ours, "theirs": _installed(theirs)}


# --- shared -----------------------------------------------------------------------


def _column(datatype, values):
    if datatype == "BYTES":
        return np.array([str(v).encode("utf-8") for v in values], dtype=np.object_)
    if datatype in ("INT64", "INT32"):
        return np.array([int(v) for v in values], dtype=NUMPY[datatype])
    return np.array(values, dtype=NUMPY[datatype])


def _plain(a):
    if a.dtype == np.object_:
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in a.tolist()]
    return a.tolist()


def _present(meta_inputs, records):
    """The metadata inputs every record has (a column cannot have holes)."""
    return [i for i in meta_inputs if all(i["name"] in r for r in records)]


# --- tritonclient -----------------------------------------------------------------


def _triton_error(e):
    status = e.status() or ""
    return {"ok": False, "code": status.replace("StatusCode.", ""), "details": e.message()}


def run_triton(url, steps):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    metadata = {}

    def meta_inputs(model, version):
        key = (model, version)
        if key not in metadata:
            md = client.get_model_metadata(model, version, as_json=True)
            metadata[key] = md["inputs"]
        return metadata[key]

    def inputs_for(model, version, records, datatypes):
        inputs = []
        for i in _present(meta_inputs(model, version), records):
            datatype = datatypes.get(i["name"], i["datatype"])
            t = grpcclient.InferInput(i["name"], [len(records)], datatype)
            t.set_data_from_numpy(_column(datatype, [r[i["name"]] for r in records]))
            inputs.append(t)
        return inputs

    def infer(s):
        model, version = s["model"], s.get("version", "")
        inputs = inputs_for(model, s.get("metadata_version", version), s["records"], s.get("datatypes", {}))
        outputs = [grpcclient.InferRequestedOutput(n) for n in s["outputs"]] if "outputs" in s else None
        r = client.infer(
            model,
            inputs,
            model_version=version,
            outputs=outputs,
            request_id=s.get("id", ""),
            headers=s.get("headers"),
            # Sent as InferParameter.double_param and uint64_param: the proto must know them.
            parameters={"experiment_weight": 0.5},
            priority=1,
        )
        resp = r.get_response(as_json=True)
        names = [o["name"] for o in resp["outputs"]]
        return {
            "model_name": resp["model_name"],
            "model_version": resp["model_version"],
            "id": resp.get("id", ""),
            "parameters": {k: v.get("string_param") for k, v in resp.get("parameters", {}).items()},
            "outputs": {n: _plain(r.as_numpy(n)) for n in names},
        }

    def stream_infer(s):
        done = threading.Event()
        seen = {}

        def callback(result, error):
            seen["error"] = error
            done.set()

        client.start_stream(callback=callback)
        try:
            try:
                client.async_stream_infer(s["model"], inputs_for(s["model"], "", s["records"], {}))
            except InferenceServerException:
                pass  # the stream already ended; its status reaches the callback
            if not done.wait(10):
                raise TimeoutError("no answer on the stream within 10 s")
        finally:
            client.stop_stream()
        if seen["error"] is None:
            return {"ok": True, "value": None}
        return _triton_error(seen["error"])

    ops = {
        "live": lambda s: client.is_server_live(headers=s.get("headers")),
        "ready": lambda s: client.is_server_ready(headers=s.get("headers")),
        "model_ready": lambda s: client.is_model_ready(s["model"], s.get("version", "")),
        "server_metadata": lambda s: client.get_server_metadata(as_json=True),
        "model_metadata": lambda s: client.get_model_metadata(s["model"], s.get("version", ""), as_json=True),
        "repository_index": lambda s: client.get_model_repository_index(as_json=True),
        "model_config": lambda s: client.get_model_config(s["model"], as_json=True),
        "statistics": lambda s: client.get_inference_statistics(s["model"], as_json=True),
        "infer": infer,
    }
    results = []
    for s in steps:
        try:
            if s["op"] == "stream_infer":
                results.append(stream_infer(s))
            else:
                results.append({"ok": True, "value": ops[s["op"]](s)})
        except InferenceServerException as e:
            results.append(_triton_error(e))
    client.close()
    return results


# --- kserve -----------------------------------------------------------------------


async def run_kserve(url, steps):
    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    client = InferenceGRPCClient(url, timeout=30, retries=0)
    # The KServe SDK's gRPC client has no metadata call; a plain stub of its own proto reads it.
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    channel = grpc.aio.insecure_channel(url)
    stub = GRPCInferenceServiceStub(channel)
    metadata = {}

    async def meta_inputs(model):
        if model not in metadata:
            md = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model))
            metadata[model] = [{"name": i.name, "datatype": i.datatype} for i in md.inputs]
        return metadata[model]

    async def infer(s):
        records = s["records"]
        inputs = []
        for i in _present(await meta_inputs(s["model"]), records):
            values = [r[i["name"]] for r in records]
            if i["datatype"] == "BYTES":
                # Lists, not numpy: the SDK sends them as typed contents (bytes_contents).
                dates = i["name"] in s.get("date_inputs", [])
                params = {"content_type": "datetime" if dates else "str"}
                inputs.append(InferInput(i["name"], [len(records)], "BYTES", [str(v) for v in values], params))
            else:
                cast = int if i["datatype"].startswith("INT") else float
                inputs.append(InferInput(i["name"], [len(records)], i["datatype"], [cast(v) for v in values]))
        req = InferRequest(
            model_name=s["model"],
            infer_inputs=inputs,
            request_id=s.get("id"),
            parameters={"content_type": "pd"},
            model_version=s.get("version") or None,
        )
        grpc_req = req.to_grpc()
        assert len(grpc_req.raw_input_contents) == 0, "the SDK was expected to send typed contents"
        headers = list(s.get("headers", {}).items()) or None
        res = await client.infer(req, headers=headers)
        return {
            "model_name": res.model_name,
            "model_version": res.model_version,
            "id": res.id,
            "parameters": {k: v.string_param for k, v in (res.parameters or {}).items()},
            "outputs": {o.name: _plain(o.as_numpy()) for o in res.outputs},
        }

    async def model_ready(s):
        return await client.is_model_ready(s["model"])

    ops = {
        "live": lambda s: client.is_server_live(),
        "ready": lambda s: client.is_server_ready(),
        "model_ready": model_ready,
        "infer": infer,
    }
    results = []
    for s in steps:
        try:
            results.append({"ok": True, "value": await ops[s["op"]](s)})
        except grpc.RpcError as e:
            results.append({"ok": False, "code": e.code().name, "details": e.details()})
    await client.close()
    await channel.close()
    return results


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if not (
        (cmd == "descriptors" and len(argv) == 4 and argv[2] in ("triton", "kserve"))
        or (cmd in ("triton", "kserve") and len(argv) == 3)
    ):
        print(__doc__, file=sys.stderr)
        return 2
    arg = argv[2]
    if cmd == "descriptors":
        out = descriptors(argv[2], argv[3])
    else:
        steps = json.load(sys.stdin)["steps"]
        out = {"results": run_triton(arg, steps) if cmd == "triton" else asyncio.run(run_kserve(arg, steps))}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
