#!/usr/bin/env python3
"""Write the table of facts of an upstream CRI api.proto that tests/contract.rs checks ours against.

    upstream-table.py UPSTREAM_API_PROTO 'kubernetes/cri-api vX.Y.Z (commit SHA)' > upstream-runtime-v1.tsv

The upstream file is read from outside the tree (see README.md). This is a small parser of its own
for the subset of proto3 the CRI uses (messages, nested messages and enums, enums, services, map,
repeated, optional and oneof fields, field options, file options, which are not tabled); anything
else stops it with an error, so a new construct upstream is noticed rather than left out of the
table. It shares no code with the test,
which reads the descriptors compiled from our file: the two must agree independently.

One line per fact, tab-separated, sorted:
    syntax   proto3
    package  runtime.v1
    message  FULL.NAME
    field    FULL.MESSAGE.field  number  label  type  options
    enum     FULL.NAME
    value    FULL.ENUM.VALUE     number
    service  FULL.NAME
    rpc      FULL.SERVICE.Method input  output  client(unary|stream)  server(unary|stream)
label is singular, repeated, optional, map or oneof:NAME; type a scalar, a full name, or
map<K,V>; options the field's options as name=value, comma-separated, or "-".
"""

import re
import sys

SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}

TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_.]*|\.[A-Za-z_][A-Za-z0-9_.]*|-?\d+|[{}()\[\]<>;=,]', re.S)


class ParseError(Exception):
    pass


def tokenize(text):
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise ParseError(f"line {line}: cannot read {text[pos:pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if tok.isspace() or tok.startswith("//") or tok.startswith("/*"):
            continue
        tokens.append(tok)
    return tokens


class Parser:
    def __init__(self, tokens):
        self.toks, self.i = tokens, 0
        self.syntax = self.package = None
        self.messages = {}  # full name -> list of (name, number, label, type_ref, options, scope)
        self.enums = {}  # full name -> list of (name, number)
        self.services = {}  # full name -> list of (method, in, out, cstream, sstream, scope)

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self):
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of file")
        self.i += 1
        return tok

    def expect(self, want):
        tok = self.next()
        if tok != want:
            raise ParseError(f"expected {want!r}, found {tok!r} (token {self.i})")

    def parse(self):
        while self.peek() is not None:
            tok = self.next()
            if tok == "syntax":
                self.expect("=")
                self.syntax = self.next().strip('"')
                self.expect(";")
            elif tok == "package":
                self.package = self.next()
                self.expect(";")
            elif tok == "option":
                self.skip_option()
            elif tok == "message":
                self.message(self.package)
            elif tok == "enum":
                self.enum(self.package)
            elif tok == "service":
                self.service()
            else:
                raise ParseError(f"unsupported top-level construct {tok!r}")
        if self.syntax != "proto3" or not self.package:
            raise ParseError("no proto3 syntax or package line")

    def skip_option(self):
        while self.next() != ";":
            pass

    def options(self):
        """[name = value, ...] after a field or enum value, or nothing."""
        opts = []
        if self.peek() == "[":
            self.next()
            while True:
                name = self.next()
                self.expect("=")
                opts.append(f"{name}={self.next()}")
                tok = self.next()
                if tok == "]":
                    break
                if tok != ",":
                    raise ParseError(f"expected ',' or ']' in options, found {tok!r}")
        return opts

    def body(self, full):
        """The tokens that start each statement of a { ... } body, up to its "}"."""
        self.expect("{")
        while (tok := self.next()) != "}":
            if tok == "option":
                raise ParseError(f"{full}: options on messages, enums and services are not tabled")
            if tok != ";":
                yield tok

    def message(self, scope):
        full = f"{scope}.{self.next()}"
        fields = self.messages.setdefault(full, [])
        for tok in self.body(full):
            if tok == "message":
                self.message(full)
            elif tok == "enum":
                self.enum(full)
            elif tok == "oneof":
                name = self.next()
                self.expect("{")
                while self.peek() != "}":
                    self.field(full, fields, f"oneof:{name}", self.next())
                self.next()
            elif tok in ("reserved", "extensions", "extend", "group", "required"):
                raise ParseError(f"{full}: unsupported {tok!r}")
            elif tok == "repeated":
                self.field(full, fields, "repeated", self.next())
            elif tok == "optional":
                self.field(full, fields, "optional", self.next())
            elif tok == "map":
                self.expect("<")
                key = self.next()
                self.expect(",")
                value = self.next()
                self.expect(">")
                self.field(full, fields, "map", ("map", key, value))
            else:
                self.field(full, fields, "singular", tok)

    def field(self, scope, fields, label, type_ref):
        name = self.next()
        self.expect("=")
        number = int(self.next())
        opts = self.options()
        self.expect(";")
        fields.append((name, number, label, type_ref, opts, scope))

    def enum(self, scope):
        full = f"{scope}.{self.next()}"
        values = self.enums.setdefault(full, [])
        for tok in self.body(full):
            if tok == "reserved":
                raise ParseError(f"{full}: unsupported 'reserved'")
            self.expect("=")
            number = int(self.next())
            opts = self.options()
            if opts:
                raise ParseError(f"{full}.{tok}: enum value options are not tabled: {opts}")
            self.expect(";")
            values.append((tok, number))

    def service(self):
        full = f"{self.package}.{self.next()}"
        methods = self.services.setdefault(full, [])
        for tok in self.body(full):
            if tok != "rpc":
                raise ParseError(f"{full}: unsupported {tok!r}")
            name = self.next()
            self.expect("(")
            cstream = self.peek() == "stream" and self.next() == "stream"
            inp = self.next()
            self.expect(")")
            self.expect("returns")
            self.expect("(")
            sstream = self.peek() == "stream" and self.next() == "stream"
            out = self.next()
            self.expect(")")
            if self.peek() == "{":
                self.next()
                if self.next() != "}":
                    raise ParseError(f"{full}.{name}: method options are not tabled")
            else:
                self.expect(";")
            methods.append((name, inp, out, cstream, sstream))

    def resolve(self, ref, scope):
        """A type reference as protoc resolves it: innermost scope first, then outwards."""
        if ref in SCALARS:
            return ref
        if ref.startswith("."):
            name = ref[1:]
            if name in self.messages or name in self.enums:
                return name
            raise ParseError(f"unknown type {ref}")
        while scope:
            candidate = f"{scope}.{ref}"
            if candidate in self.messages or candidate in self.enums:
                return candidate
            scope = scope.rpartition(".")[0]
        if ref in self.messages or ref in self.enums:
            return ref
        raise ParseError(f"unknown type {ref} (from {scope})")


def rows(p):
    out = [("syntax", p.syntax), ("package", p.package)]
    for msg, fields in p.messages.items():
        out.append(("message", msg))
        seen = set()
        for name, number, label, type_ref, opts, scope in fields:
            if name in seen or number in {f[1] for f in fields if f[0] != name}:
                raise ParseError(f"{msg}: duplicate field name or number at {name} = {number}")
            seen.add(name)
            if isinstance(type_ref, tuple):
                _, key, value = type_ref
                type_name = f"map<{p.resolve(key, scope)},{p.resolve(value, scope)}>"
            else:
                type_name = p.resolve(type_ref, scope)
            out.append(("field", f"{msg}.{name}", str(number), label, type_name, ",".join(opts) or "-"))
    for enum, values in p.enums.items():
        out.append(("enum", enum))
        for name, number in values:
            out.append(("value", f"{enum}.{name}", str(number)))
    for svc, methods in p.services.items():
        out.append(("service", svc))
        for name, inp, outp, cstream, sstream in methods:
            out.append((
                "rpc", f"{svc}.{name}", p.resolve(inp, p.package), p.resolve(outp, p.package),
                "stream" if cstream else "unary", "stream" if sstream else "unary",
            ))
    return sorted(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, source = sys.argv[1], sys.argv[2]
    try:
        with open(path, encoding="utf-8") as f:
            parser = Parser(tokenize(f.read()))
        parser.parse()
        table = rows(parser)
    except (OSError, ParseError) as e:
        sys.exit(f"upstream-table.py: {path}: {e}")
    print(f"# The CRI runtime.v1 contract as published in {source},")
    print("# pkg/apis/runtime/v1/api.proto. Written by proto/upstream-table.py (see proto/README.md);")
    print("# do not edit by hand. Columns: kind, full name, then per kind (see the script).")
    for row in table:
        print("\t".join(row))


if __name__ == "__main__":
    main()
