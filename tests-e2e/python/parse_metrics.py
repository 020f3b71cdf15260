"""Parses Prometheus text (stdin: {"text": ...}) with the reference client library's parser
(PyPI prometheus-client) and prints its families as JSON: name, type, and each sample's name,
labels and value. A line the parser rejects fails the script."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = json.load(sys.stdin)["text"]
families = []
for family in text_string_to_metric_families(text):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    })
print(json.dumps(families))
