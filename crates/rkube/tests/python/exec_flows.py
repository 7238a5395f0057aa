"""kubectl exec's flows through the Python kubernetes client, which speaks
WebSocket (v4.channel.k8s.io) rather than SPDY: output, stdin, stderr apart
from stdout, and the exit code from the error channel.

Usage: exec_flows.py KUBECONFIG POD
"""
import sys

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config(sys.argv[1])
pod = sys.argv[2]
v1 = client.CoreV1Api()

out = stream(v1.connect_get_namespaced_pod_exec, pod, "default",
             command=["sh", "-c", "echo to-out; echo to-err >&2"],
             stderr=True, stdin=False, stdout=True, tty=False)
assert "to-out" in out and "to-err" in out, repr(out)

resp = stream(v1.connect_get_namespaced_pod_exec, pod, "default",
              command=["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 3"],
              stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
resp.write_stdin("abc\n")
stdout, stderr = "", ""
while resp.is_open():
    resp.update(timeout=5)
    stdout += resp.read_stdout() or ""
    stderr += resp.read_stderr() or ""
resp.close()
assert stdout.strip() == "got-abc", repr(stdout)
assert stderr.strip() == "oops", repr(stderr)
assert resp.returncode == 3, resp.returncode

try:
    stream(v1.connect_get_namespaced_pod_exec, "no-such-pod", "default",
           command=["true"], stderr=True, stdin=False, stdout=True, tty=False)
    raise AssertionError("exec in a missing pod succeeded")
except client.exceptions.ApiException as e:
    # The client reports a refused WebSocket handshake with status 0 and
    # the server's answer in the reason.
    assert "404" in str(e) and "not found" in str(e), e
print("python exec: ok")
