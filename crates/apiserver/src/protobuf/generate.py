#!/usr/bin/env python3
"""Derives messages.json, the table the API server decodes Kubernetes
protobuf bodies with, from Kubernetes' own API sources at one release:
the generated.proto files (message layouts) and the Go types beside them
(how each field appears in JSON).

For every message: its fields as [tag, json, flags, kind], where
  json   the field's JSON name; "" when Go inlines the field's struct into
         its parent (`json:",inline"`, e.g. Probe's ProbeHandler);
  flags  1 repeated, 2 the JSON tag says omitempty, 4 the Go field is a
         pointer (its zero value is meaningful and kept);
  kind   a scalar type (string, bytes, bool, int32, int64, double), the
         full name of a message, or "map:" and the map's value kind (keys
         are strings).
Also: `lists`, messages whose Go type is a named slice (`type ExtraValue
[]string`), whose JSON is the bare list of their `items`; and `groups`,
"group/version" (core: "v1") -> the proto package of its types.

Usage (each argument a checkout of the repository at one release tag):
  generate.py API APIMACHINERY APIEXTENSIONS > crates/apiserver/src/protobuf/messages.json
for k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver. The
committed table comes from v0.34.10 (Kubernetes 1.34: 1.33's types and the
fields kubectl 1.34 may send; k8s-pb 0.9, which the tests encode with, is 1.34
too). It warns on stderr about fields it found no Go struct tag for.
"""
import json
import os
import re
import sys

ROOTS = list(zip(sys.argv[1:4], ['k8s.io/api', 'k8s.io/apimachinery', 'k8s.io/apiextensions-apiserver']))
SCALARS = {'string', 'bytes', 'bool', 'int32', 'int64', 'double'}
REPEATED, OMITEMPTY, POINTER = 1, 2, 4
# Types with their own JSON forms (custom MarshalJSON), which the decoder
# maps by hand; their fields have no JSON facts.
SPECIAL = {'Time', 'MicroTime', 'Duration', 'FieldsV1', 'RawExtension', 'Unknown', 'IntOrString',
           'Quantity', 'QuantityValue', 'JSON', 'JSONSchemaPropsOrArray', 'JSONSchemaPropsOrBool',
           'JSONSchemaPropsOrStringArray'}

message_re = re.compile(r'^message (\w+) \{(.*?)^\}', re.M | re.S)
proto_field_re = re.compile(
    r'^\s*(optional|repeated)?\s*(map<\s*string,\s*([\w.]+)>|[\w.]+) (\w+) = (\d+);', re.M)
struct_re = re.compile(r'^type (\w+) struct \{\s*$')
slice_re = re.compile(r'^type (\w+) \[\]')
go_field_re = re.compile(r'^\s*(\w+\s+)?([^\s`]+)\s+`([^`]*)`')
go_tag_re = re.compile(r'(\w+):"([^"]*)"')


def go_facts(directory, messages):
    """Go struct facts per message: {tag: (json name, flags)}; named slices."""
    facts, lists = {}, set()
    for f in sorted(os.listdir(directory)):
        if not f.endswith('.go') or f.endswith('_test.go') or f.startswith('zz_generated') \
                or f == 'generated.pb.go':
            continue
        current = None
        for line in open(os.path.join(directory, f)):
            m = struct_re.match(line)
            if m:
                current = m.group(1) if m.group(1) in messages else None
                if current:
                    facts.setdefault(current, {})
                continue
            m = slice_re.match(line)
            if m and m.group(1) in messages:
                lists.add(m.group(1))
                continue
            if line.startswith('}'):
                current = None
            if current is None:
                continue
            m = go_field_re.match(line)
            if not m:
                continue
            tags = dict(go_tag_re.findall(m.group(3)))
            if 'protobuf' not in tags or 'json' not in tags:
                continue
            tag = int(tags['protobuf'].split(',')[1])
            name, *options = tags['json'].split(',')
            if name == '-':
                continue
            flags = (OMITEMPTY if 'omitempty' in options else 0) | \
                (POINTER if m.group(2).startswith('*') else 0)
            if not name and 'inline' not in options:
                # Go's default JSON name: the field's (or embedded type's) name.
                name = (m.group(1) or m.group(2).lstrip('*').split('.')[-1]).strip()
            facts[current][tag] = (name, flags)
    return facts, lists


def main():
    out = {'groups': {}, 'lists': [], 'messages': {}}
    for root, _module in ROOTS:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in ('testdata', 'vendor'))
            if 'generated.proto' not in files:
                continue
            text = open(os.path.join(dirpath, 'generated.proto')).read()
            package = re.search(r'^package ([\w.]+);', text, re.M).group(1)
            if 'testapigroup' in package or 'apis.example' in package:
                continue
            register = os.path.join(dirpath, 'register.go')
            if os.path.exists(register):
                g = re.search(r'GroupName\s*=\s*"([^"]*)"', open(register).read())
                if g:
                    version = os.path.basename(dirpath)
                    gv = f'{g.group(1)}/{version}' if g.group(1) else version
                    out['groups'][gv] = package
            bodies = {m.group(1): m.group(2) for m in message_re.finditer(text)}
            facts, lists = go_facts(dirpath, bodies)
            out['lists'] += [f'{package}.{name}' for name in lists]

            def kind_of(t):
                if t in SCALARS:
                    return t
                return t[1:] if t.startswith('.') else f'{package}.{t}'

            for name, body in bodies.items():
                fields = []
                for f in proto_field_re.finditer(body):
                    label, ty, map_value, proto_name, tag = f.groups()
                    tag = int(tag)
                    fact = facts.get(name, {}).get(tag)
                    if fact is None and name not in lists and name not in SPECIAL:
                        print(f'no Go field for {package}.{name}.{proto_name}', file=sys.stderr)
                    json_name, flags = fact or (proto_name, 0)
                    if map_value:
                        kind = 'map:' + kind_of(map_value)
                    else:
                        kind = kind_of(ty)
                        if label == 'repeated':
                            flags |= REPEATED
                    fields.append([tag, json_name, flags, kind])
                out['messages'][f'{package}.{name}'] = fields
    out['lists'].sort()
    print(json.dumps(out, sort_keys=True, separators=(',', ':')))


main()
