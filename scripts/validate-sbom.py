#!/usr/bin/env python3
"""Validate an SBOM with the reference tooling of its format.

    python3 scripts/validate-sbom.py spdx FILE        # SPDX 2.x JSON
    python3 scripts/validate-sbom.py cyclonedx FILE   # CycloneDX 1.5 JSON

spdx:      parses FILE with spdx-tools (the library behind `pyspdxtools -i`)
           and runs its full validator, then cross-checks what it does not:
           every package verification code is recomputed per SPDX 2.3 §7.9
           from the SHA-1s of the files the package CONTAINS, and every purl
           must parse with packageurl-python.
cyclonedx: runs cyclonedx-python-lib's JsonStrictValidator for CycloneDX 1.5
           (schema with unknown properties rejected, formats checked), loads
           the BOM with the library's model (Bom.from_json + validate), then
           checks that bom-refs are unique, that every dependency ref
           resolves, and that every purl parses.

Exit status: 0 valid; 1 invalid (every problem is printed, one per line);
2 usage error or unreadable file; 3 a required Python package is not
installed (the message names it: "missing: <package>").
"""

import hashlib
import json
import sys

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_MISSING = 3


def missing(package, err):
    print(f"missing: {package} ({err})", file=sys.stderr)
    sys.exit(EXIT_MISSING)


def check_purl(purl, where, errors):
    try:
        from packageurl import PackageURL
    except ImportError:
        return  # optional cross-check; cyclonedx-python-lib normally brings it
    try:
        PackageURL.from_string(purl)
    except ValueError as err:
        errors.append(f"{where}: purl {purl!r} does not parse: {err}")


def validate_spdx(path):
    try:
        from spdx_tools.spdx.parser.error import SPDXParsingError
        from spdx_tools.spdx.parser.json.json_parser import parse_from_file
        from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    except ImportError as err:
        missing("spdx-tools", err)

    errors = []
    with open(path, encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except ValueError as err:
            print(f"not JSON: {path}: {err}")
            return EXIT_INVALID
    if not isinstance(raw, dict):
        print(f"not an SPDX document: {path}: the top-level JSON value is not an object")
        return EXIT_INVALID
    try:
        # The JSON parser directly (what `pyspdxtools -i x.json` picks), so the
        # file name need not end in .json.
        document = parse_from_file(path)
    except SPDXParsingError as err:
        for message in err.get_messages():
            print(f"parse error: {message}")
        return EXIT_INVALID
    except Exception as err:  # spdx-tools raises assorted errors on odd input
        print(f"parse error: {type(err).__name__}: {err}")
        return EXIT_INVALID

    for message in validate_full_spdx_document(document):
        context = message.context
        where = context.spdx_id or context.parent_id or (context.element_type and context.element_type.name) or ""
        errors.append(f"{where}: {message.validation_message}" if where else message.validation_message)

    # Cross-checks on the raw JSON.
    files = {f.get("SPDXID"): f for f in raw.get("files", [])}
    contains = {}
    for rel in raw.get("relationships", []):
        if rel.get("relationshipType") == "CONTAINS" and rel.get("relatedSpdxElement") in files:
            contains.setdefault(rel.get("spdxElementId"), []).append(rel["relatedSpdxElement"])
    for pkg in raw.get("packages", []):
        pid = pkg.get("SPDXID")
        code = (pkg.get("packageVerificationCode") or {}).get("packageVerificationCodeValue")
        if code is None:
            continue
        sha1s = []
        for fid in contains.get(pid, []):
            for checksum in files[fid].get("checksums", []):
                if checksum.get("algorithm") == "SHA1":
                    sha1s.append(checksum.get("checksumValue", "").lower())
        expected = hashlib.sha1("".join(sorted(sha1s)).encode("ascii")).hexdigest()
        if code != expected:
            errors.append(f"{pid}: packageVerificationCode {code} != {expected} computed from its files")
        for ref in pkg.get("externalRefs", []):
            if ref.get("referenceType") == "purl":
                check_purl(ref.get("referenceLocator", ""), pid, errors)

    for error in errors:
        print(error)
    if errors:
        return EXIT_INVALID
    print(f"{path}: valid {document.creation_info.spdx_version} "
          f"({len(document.packages)} packages, {len(document.files)} files)")
    return 0


def validate_cyclonedx(path):
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError as err:
        missing("cyclonedx-python-lib", err)

    with open(path, encoding="utf-8") as f:
        data = f.read()
    try:
        raw = json.loads(data)
    except ValueError as err:
        print(f"not JSON: {path}: {err}")
        return EXIT_INVALID
    if not isinstance(raw, dict):
        print(f"not a CycloneDX BOM: {path}: the top-level JSON value is not an object")
        return EXIT_INVALID

    errors = []
    if raw.get("specVersion") != "1.5":
        errors.append(f"specVersion is {raw.get('specVersion')!r}, expected '1.5'")
    try:
        schema_errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(data, all_errors=True)
    except Exception as err:  # missing optional deps raise here
        missing("cyclonedx-python-lib[json-validation]", err)
    for error in schema_errors or []:
        inner = error.data
        location = "/".join(str(p) for p in getattr(inner, "absolute_path", []))
        errors.append(f"schema: {location or '<root>'}: {getattr(inner, 'message', inner)}")

    # The reference library must also be able to load it as a model.
    try:
        from cyclonedx.model.bom import Bom

        Bom.from_json(raw).validate()
    except Exception as err:  # the library raises many exception types
        errors.append(f"cyclonedx-python-lib cannot load the BOM: {type(err).__name__}: {err}")

    refs = {}
    stack = [raw.get("metadata", {}).get("component")] + list(raw.get("components", []))
    while stack:
        component = stack.pop()
        if not isinstance(component, dict):
            continue
        ref = component.get("bom-ref")
        if ref is not None:
            refs[ref] = refs.get(ref, 0) + 1
        if "purl" in component:
            check_purl(component["purl"], ref or component.get("name"), errors)
        stack.extend(component.get("components", []))
    for ref, count in sorted(refs.items()):
        if count > 1:
            errors.append(f"bom-ref {ref!r} is used {count} times")
    for dep in raw.get("dependencies", []):
        for ref in [dep.get("ref")] + list(dep.get("dependsOn", [])):
            if ref not in refs:
                errors.append(f"dependency ref {ref!r} names no component")

    for error in errors:
        print(error)
    if errors:
        return EXIT_INVALID
    print(f"{path}: valid CycloneDX 1.5 ({len(raw.get('components', []))} components)")
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("spdx", "cyclonedx"):
        print(__doc__.strip(), file=sys.stderr)
        return EXIT_USAGE
    try:
        with open(argv[2], "rb"):
            pass
    except OSError as err:
        print(f"cannot read {argv[2]}: {err}", file=sys.stderr)
        return EXIT_USAGE
    if argv[1] == "spdx":
        return validate_spdx(argv[2])
    return validate_cyclonedx(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
