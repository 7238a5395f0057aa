#!/usr/bin/env python3
"""Derives the protobuf message table the API server decodes Kubernetes
protobuf bodies with: for every message of the Kubernetes API, its fields'
tags, kinds and (Rust snake_case) names, read from the prost code of the
k8s-pb crate. The server maps the names to Kubernetes' JSON names with the
OpenAPI schemas it already has.

Usage: scripts/gen-protobuf-messages.py PATH/TO/k8s-pb-x.y.z/src > crates/apiserver/src/protobuf/messages.json
"""
import json
import os
import re
import sys

root = sys.argv[1]
messages = {}


def resolve(package, path):
    """The full message name of a Rust type path seen from `package`."""
    mods = package.split('.')[2:]
    mods = [m.replace('-', '_') for m in mods]
    path = path.replace('::prost::alloc::boxed::Box<', '').replace(' ', '').rstrip('>').rstrip(',')
    segs = path.split('::')
    while segs and segs[0] == 'super':
        mods = mods[:-1]
        segs = segs[1:]
    full = mods + segs[:-1]
    full = [m.replace('_', '-') if m in ('apiextensions_apiserver', 'kube_aggregator') else m for m in full]
    return 'k8s.io.' + '.'.join(full) + '.' + segs[-1]

attr_re = re.compile(r'#\[prost\((.*)\)\]')
field_re = re.compile(r'pub (r#)?(\w+): (.*),$')
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'):
            continue
        rel = os.path.relpath(dirpath, root)
        if rel == '.':
            continue
        parts = rel.split(os.sep)
        # src/api/core/v1 -> k8s.io.api.core.v1; apiextensions_apiserver -> apiextensions-apiserver
        parts = [p.replace('_', '-') if p in ('apiextensions_apiserver', 'kube_aggregator') else p for p in parts]
        package = 'k8s.io.' + '.'.join(parts)
        lines = open(os.path.join(dirpath, f)).read().split('\n')
        current = None
        pending = None
        # Join fields whose types rustfmt spread over several lines.
        joined = []
        buf = None
        for line in lines:
            t = line.strip()
            if buf is not None:
                buf += (' ' if buf.endswith(':') else '') + t
                if buf.count('<') == buf.count('>') and buf.endswith(','):
                    joined.append('    ' + buf)
                    buf = None
                continue
            if t.startswith('pub ') and ':' in t and not t.endswith(',') and not t.endswith('{'):
                buf = t
                continue
            joined.append(line)
        for line in joined:
            s = line.strip()
            m = re.match(r'pub struct (\w+) \{', s)
            if m and line.startswith('pub struct'):
                current = package + '.' + m.group(1)
                messages[current] = []
                pending = None
                continue
            if line.startswith('}'):
                current = None
                continue
            if current is None:
                continue
            m = attr_re.match(s)
            if m:
                pending = m.group(1)
                continue
            m = field_re.match(s)
            if m and pending:
                attr = pending
                pending = None
                name, rust_type = m.group(2), m.group(3)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                field = {'tag': tag, 'name': name}
                kind = attr.split(',')[0].strip()
                if kind.startswith('btree_map') or kind.startswith('map'):
                    k, v = re.search(r'map = "(\w+), (\w+)"', attr).groups()
                    field['map'] = [k, v]
                    if v == 'message':
                        inner = re.search(r'BTreeMap<[^,]+,(.*?),?>$', rust_type).group(1).strip()
                        field['message'] = resolve(package, inner)
                else:
                    field['type'] = kind
                    field['repeated'] = 'repeated' in attr
                    if kind == 'message':
                        inner = re.sub(r'^(::core::option::Option|::prost::alloc::vec::Vec)<(.*)>$', r'\2', rust_type)
                        field['message'] = resolve(package, inner)
                messages[current].append(field)

print(json.dumps(messages, indent=None, sort_keys=True, separators=(',', ':')))
