"""A stand-in API server for capture.sh: serves the discovery documents and
the few objects kubectl reads before it writes, and fails every write (kubectl
has logged the body by then). Prints its port."""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

def res(name, kind, namespaced=True, verbs=("create", "get", "list")):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}

DOCS = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
        {"name": "certificates.k8s.io", "versions": [{"groupVersion": "certificates.k8s.io/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "certificates.k8s.io/v1", "version": "v1"}}]},
    "/apis/certificates.k8s.io/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "certificates.k8s.io/v1",
        "resources": [res("certificatesigningrequests", "CertificateSigningRequest", False)]},
    "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1": {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr1", "uid": "u-1", "resourceVersion": "7", "creationTimestamp": "2025-01-02T03:04:05Z"},
        "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "signerName": "kubernetes.io/kube-apiserver-client",
                 "expirationSeconds": 86400, "usages": ["client auth"], "username": "alice", "groups": ["devs", "system:authenticated"],
                 "extra": {"scopes": ["a", "b"]}}},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        res("pods", "Pod"), res("services", "Service"), res("configmaps", "ConfigMap")]},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        res("deployments", "Deployment"), res("deployments/scale", "Scale")]},
    "/apis/apps/v1/namespaces/default/deployments/web": {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx",
                                                       "ports": [{"containerPort": 8080}]}]}}}},
}

class H(BaseHTTPRequestHandler):
    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        doc = DOCS.get(self.path.split("?")[0])
        if doc is None:
            self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
        else:
            self.reply(200, doc)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "stub", "code": 500})
    do_PUT = do_POST
    def log_message(self, *a):
        pass

s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
