"""Validates OpenLineage events against the official schema and every facet against the schema
its `_schemaURL` names, offline (schemas from tests/fixtures/openlineage and schema/openlineage).

Usage: validate_openlineage.py REPO_ROOT EVENTS.json   (a JSON array of events)
Prints `ok: N events, M facets` and exits 0, or prints each problem and exits 1.
"""

import json
import pathlib
import sys
import urllib.parse

import jsonschema
from referencing import Registry, Resource

root = pathlib.Path(sys.argv[1])
events = json.loads(pathlib.Path(sys.argv[2]).read_text())

schemas = {}
for directory in [root / "tests/fixtures/openlineage", root / "schema/openlineage"]:
    for path in sorted(directory.rglob("*.json")):
        schema = json.loads(path.read_text())
        schemas[schema["$id"]] = schema
registry = Registry().with_resources(
    (uri, Resource.from_contents(s)) for uri, s in schemas.items()
)
core = schemas["https://openlineage.io/spec/2-0-2/OpenLineage.json"]
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
problems = []


def validate(instance, schema, where):
    validator = jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=checker
    )
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) < 300 else error.message[:300] + "…"
        problems.append(f"{where}/{path}: {message}")


def is_uri(text):
    # jsonschema checks `uri` only with rfc3987 installed; a scheme is the part that matters.
    parts = urllib.parse.urlparse(text)
    return bool(parts.scheme) and (bool(parts.netloc) or bool(parts.path))


n_facets = 0


def facets(container, where):
    global n_facets
    for name, facet in (container or {}).items():
        url = facet.get("_schemaURL", "")
        base = url.split("#")[0]
        if base not in schemas:
            problems.append(f"{where}/{name}: no local schema for _schemaURL {url}")
            continue
        n_facets += 1
        validate(facet, {"$ref": url}, f"{where}/{name}")
        if not is_uri(facet.get("_producer", "")):
            problems.append(f"{where}/{name}: _producer is not a URI")


for i, event in enumerate(events):
    where = f"event {i} ({event.get('eventType')} {event.get('job', {}).get('name')})"
    validate(event, core, where)
    for key in ["producer", "schemaURL"]:
        if not is_uri(event.get(key, "")):
            problems.append(f"{where}/{key}: not a URI")
    facets(event.get("run", {}).get("facets"), f"{where}/run/facets")
    facets(event.get("job", {}).get("facets"), f"{where}/job/facets")
    for side in ["inputs", "outputs"]:
        for j, dataset in enumerate(event.get(side, [])):
            facets(dataset.get("facets"), f"{where}/{side}/{j}/facets")
            facets(dataset.get("inputFacets"), f"{where}/{side}/{j}/inputFacets")
            facets(dataset.get("outputFacets"), f"{where}/{side}/{j}/outputFacets")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"ok: {len(events)} events, {n_facets} facets")
