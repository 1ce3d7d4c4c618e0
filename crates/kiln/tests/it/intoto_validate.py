#!/usr/bin/env python3
"""Parse kiln's in-toto statements and Sigstore bundles with the reference models.

    python3 intoto_validate.py provenance STATEMENT.json
    python3 intoto_validate.py bundle BUNDLE.json

provenance: parses the statement strictly (unknown fields refused) into the
            in-toto-attestation Statement proto and runs its validate(), then
            parses the predicate into the SLSA Provenance v1 proto of the same
            library, checks its required fields, and runs ResourceDescriptor
            validate() on every resolvedDependency, byproduct and builder
            dependency, plus the v1 spec's rule the library does not check
            (one of uri, digest or content).
bundle:     parses a Sigstore bundle with sigstore-protobuf-specs' Bundle model
            (an image signature or an attestation) and prints its media type,
            signature count and statement predicate type.

Exit status: 0 valid; 1 invalid (the problem is printed); 2 usage error;
3 a required Python package is not installed ("missing: <package>").
"""

import json
import sys

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_MISSING = 3


def invalid(msg):
    print(f"invalid: {msg}", file=sys.stderr)
    sys.exit(EXIT_INVALID)


def provenance(text):
    try:
        from google.protobuf import json_format
        from in_toto_attestation.v1 import statement_pb2
        from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
        from in_toto_attestation.v1.statement import Statement
        from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    except ImportError as e:
        print(f"missing: in-toto-attestation ({e})", file=sys.stderr)
        sys.exit(EXIT_MISSING)

    try:
        pb = json_format.Parse(text, statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
    except (json_format.ParseError, ValueError) as e:
        invalid(f"statement: {e}")
    if pb.predicate_type != "https://slsa.dev/provenance/v1":
        invalid(f"predicateType {pb.predicate_type!r}")
    try:
        pred = json_format.ParseDict(
            json.loads(text)["predicate"], provenance_pb2.Provenance()
        )
    except (json_format.ParseError, KeyError) as e:
        invalid(f"SLSA v1 predicate: {e}")
    bd, rd = pred.build_definition, pred.run_details
    if not bd.build_type:
        invalid("buildDefinition.buildType is empty")
    if not bd.HasField("external_parameters"):
        invalid("buildDefinition.externalParameters is missing")
    if not rd.builder.id:
        invalid("runDetails.builder.id is empty")
    described = [
        ("subject", list(pb.subject)),
        ("resolvedDependencies", list(bd.resolved_dependencies)),
        ("byproducts", list(rd.byproducts)),
        ("builderDependencies", list(rd.builder.builder_dependencies)),
    ]
    count = 0
    for field, items in described:
        for i, d in enumerate(items):
            where = f"{field}[{i}]"
            try:
                ResourceDescriptor.copy_from_pb(d).validate()
            except ValueError as e:
                invalid(f"{where}: {e}")
            if not (d.uri or len(d.digest) or d.content):
                invalid(f"{where}: none of uri, digest, content is set")
            count += 1
    print(json.dumps({"descriptors": count}))


def bundle(text):
    try:
        from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle
    except ImportError as e:
        print(f"missing: sigstore-protobuf-specs ({e})", file=sys.stderr)
        sys.exit(EXIT_MISSING)
    try:
        b = Bundle.from_dict(json.loads(text))  # how sigstore-python loads bundles
    except Exception as e:  # the model raises several kinds; any is a failure
        invalid(f"bundle: {type(e).__name__}: {e}")
    if not b.dsse_envelope.payload:
        invalid("bundle: no DSSE payload")
    if not b.verification_material.public_key.hint:
        invalid("bundle: no public key hint")
    try:
        predicate_type = json.loads(b.dsse_envelope.payload)["predicateType"]
    except Exception as e:
        invalid(f"bundle: the DSSE payload is not an in-toto statement: {type(e).__name__}: {e}")
    print(
        json.dumps(
            {
                "mediaType": b.media_type,
                "signatures": len(b.dsse_envelope.signatures),
                "predicateType": predicate_type,
            }
        )
    )


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("provenance", "bundle"):
        print(__doc__, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    with open(sys.argv[2], encoding="utf-8") as f:
        text = f.read()
    (provenance if sys.argv[1] == "provenance" else bundle)(text)


if __name__ == "__main__":
    main()
