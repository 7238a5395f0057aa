"""The Python `kubernetes` client against rkube: CRUD, conflicts, patches,
list with selectors and paging, watch. Usage: core_flows.py KUBECONFIG"""
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()

ns = client.V1Namespace(metadata=client.V1ObjectMeta(name="py"))
v1.create_namespace(ns)
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"app": "py"}), data={"k": "1"})
created = v1.create_namespaced_config_map("py", cm)
assert created.metadata.uid, created
try:
    v1.create_namespaced_config_map("py", cm)
    raise SystemExit("duplicate create succeeded")
except ApiException as e:
    assert e.status == 409 and '"reason":"AlreadyExists"' in e.body.replace(" ", ""), e.body

got = v1.read_namespaced_config_map("cfg", "py")
got.data["k"] = "2"
v1.replace_namespaced_config_map("cfg", "py", got)
try:
    v1.replace_namespaced_config_map("cfg", "py", got)
    raise SystemExit("stale replace succeeded")
except ApiException as e:
    assert e.status == 409, e

v1.patch_namespaced_config_map("cfg", "py", {"metadata": {"labels": {"extra": "yes"}}})
assert v1.read_namespaced_config_map("cfg", "py").metadata.labels["extra"] == "yes"

for i in range(5):
    v1.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"n{i}", labels={"group": "many"})))
page = v1.list_namespaced_config_map("py", label_selector="group=many", limit=2)
names = [c.metadata.name for c in page.items]
while page.metadata._continue:
    page = v1.list_namespaced_config_map("py", label_selector="group=many", limit=2, _continue=page.metadata._continue)
    names += [c.metadata.name for c in page.items]
assert names == ["n0", "n1", "n2", "n3", "n4"], names

deploy = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
}
apps.create_namespaced_deployment("py", deploy)
scale = apps.read_namespaced_deployment_scale("web", "py")
assert scale.spec.replicas == 2, scale
apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 4}})
assert apps.read_namespaced_deployment("web", "py").spec.replicas == 4

rv = v1.list_namespaced_config_map("py").metadata.resource_version
v1.delete_namespaced_config_map("cfg", "py")
seen = []
for ev in watch.Watch().stream(v1.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=2):
    seen.append((ev["type"], ev["object"].metadata.name))
assert seen == [("DELETED", "cfg")], seen
try:
    v1.read_namespaced_config_map("cfg", "py")
    raise SystemExit("deleted object still readable")
except ApiException as e:
    assert e.status == 404, e
print("python client: ok")
