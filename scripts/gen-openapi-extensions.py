#!/usr/bin/env python3
"""Derives the OpenAPI extensions Kubernetes' openapi-gen publishes for list,
map and strategic-merge-patch behaviour (x-kubernetes-list-type,
-list-map-keys, -map-type, -patch-strategy, -patch-merge-key), which the
k8s-openapi schemas do not carry. They come from the Go API types: struct
tags `patchStrategy:"..."` / `patchMergeKey:"..."` and the comment markers
`+listType=`, `+listMapKey=`, `+mapType=`, `+structType=`, on fields and
(map-type only) on types. Fields of embedded (inline) structs count as the
embedding type's. Only the stable versions (v1, v2) are kept.

Usage: scripts/gen-openapi-extensions.py API MACHINERY APIEXTENSIONS TAG \
           > crates/api/src/openapi/extensions.json
where API, MACHINERY and APIEXTENSIONS are git clones of k8s.io/api,
k8s.io/apimachinery and k8s.io/apiextensions-apiserver, and TAG their
release tag (v0.33.x for Kubernetes 1.33).
"""
import json
import re
import subprocess
import sys


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True,
                          capture_output=True, text=True).stdout


def sources(repo, tag, under, prefix_of):
    """(definition prefix, source) for every Go file of the packages."""
    for path in git(repo, "ls-tree", "-r", "--name-only", tag, under).split():
        if not path.endswith(".go") or path.endswith("_test.go") or "generated" in path:
            continue
        prefix = prefix_of(path.rsplit("/", 1)[0])
        if prefix:
            yield prefix, git(repo, "show", f"{tag}:{path}")


MARKER = re.compile(r"^\s*//\s*\+(listType|listMapKey|mapType|structType|patchStrategy|patchMergeKey)=(\S+)")
TYPE = re.compile(r"^type\s+(\w+)\s+struct\s*{")
FIELD = re.compile(r"^(?:(\w+)\s+)?([\w.\[\]*{}]+)\s*(`[^`]*`)?")


def struct_tag(tags, key):
    m = re.search(key + r':"([^"]*)"', tags or "")
    return m.group(1) if m else None


def markers(comments):
    ext, keys = {}, []
    for c in comments:
        m = MARKER.match(c)
        if not m:
            continue
        k, v = m.groups()
        if k == "listType":
            ext["x-kubernetes-list-type"] = v
        elif k == "listMapKey":
            keys.append(v)
        elif k in ("mapType", "structType"):
            ext["x-kubernetes-map-type"] = v
        elif k == "patchStrategy":
            ext["x-kubernetes-patch-strategy"] = v
        elif k == "patchMergeKey":
            ext["x-kubernetes-patch-merge-key"] = v
    if keys:
        ext["x-kubernetes-list-map-keys"] = keys
    return ext


def parse(prefix, src, fields, inlines, types):
    comments, cur = [], None
    for line in src.splitlines():
        s = line.strip()
        if cur is None:
            m = TYPE.match(line)
            if m and not s.endswith("}"):
                cur = prefix + "." + m.group(1)
                ext = {k: v for k, v in markers(comments).items() if k == "x-kubernetes-map-type"}
                if ext:
                    types[cur] = ext
                comments = []
            else:
                comments = comments + [line] if s.startswith("//") else []
            continue
        if s.startswith("//"):
            comments.append(line)
            continue
        if s.startswith("}"):
            cur = None
        m = FIELD.match(s) if cur and s else None
        if m:
            name, ty, tags = m.groups()
            js = struct_tag(tags, "json")
            json_name = js.split(",")[0] if js is not None else None
            if name is None or (json_name == "" and "inline" in js):
                if "." not in ty.lstrip("*"):
                    inlines.setdefault(cur, []).append(prefix + "." + ty.lstrip("*"))
            elif json_name and json_name != "-":
                ext = markers(comments)
                for key, ext_key in (("patchStrategy", "x-kubernetes-patch-strategy"),
                                     ("patchMergeKey", "x-kubernetes-patch-merge-key")):
                    if struct_tag(tags, key):
                        ext[ext_key] = struct_tag(tags, key)
                if ext:
                    fields.setdefault(cur, {})[json_name] = dict(sorted(ext.items()))
        comments = []


def main():
    api, machinery, apiextensions, tag = sys.argv[1:5]
    files = []
    files += sources(api, tag, ".", lambda d: "io.k8s.api." + d.replace("/", ".")
                     if re.fullmatch(r"[a-z]+/v[12]", d) else None)
    files += sources(machinery, tag, "pkg/apis/meta/v1", lambda d: "io.k8s.apimachinery.pkg.apis.meta.v1"
                     if d == "pkg/apis/meta/v1" else None)
    files += sources(apiextensions, tag, "pkg/apis/apiextensions/v1",
                     lambda d: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"
                     if d == "pkg/apis/apiextensions/v1" else None)
    fields, inlines, types = {}, {}, {}
    for prefix, src in files:
        parse(prefix, src, fields, inlines, types)

    def all_fields(t, seen=()):
        out = {}
        for e in inlines.get(t, []):
            if e not in seen:
                out.update(all_fields(e, seen + (t,)))
        out.update(fields.get(t, {}))
        return out

    out = ["{", ' "source": ' + json.dumps(f"k8s.io/api, apimachinery, apiextensions-apiserver {tag}") + ",",
           ' "fields": {']
    defs = [(t, all_fields(t)) for t in sorted(set(fields) | set(inlines))]
    defs = [(t, f) for t, f in defs if f]
    for i, (t, f) in enumerate(defs):
        out.append(f"  {json.dumps(t)}: {{")
        items = sorted(f.items())
        for j, (name, ext) in enumerate(items):
            out.append(f"   {json.dumps(name)}: {json.dumps(ext)}" + ("," if j + 1 < len(items) else ""))
        out.append("  }" + ("," if i + 1 < len(defs) else ""))
    out.append(" },")
    out.append(' "types": {')
    items = sorted(types.items())
    for i, (t, ext) in enumerate(items):
        out.append(f"  {json.dumps(t)}: {json.dumps(ext)}" + ("," if i + 1 < len(items) else ""))
    out.append(" }")
    out.append("}")
    print("\n".join(out))


main()
