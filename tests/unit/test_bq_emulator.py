"""The launcher's parse memo hands out trees equal to a fresh parse, and each caller its own."""

import sqlglot

from ampbq.tools import bq_emulator

SQL = "SELECT a, b FROM `p.d.t` WHERE upload_hour = TIMESTAMP '2024-01-31 05:00:00+00'"


def test_a_remembered_parse_equals_a_fresh_one_and_is_a_copy():
    first = bq_emulator.parse_one(SQL, read="bigquery")
    first.find(sqlglot.exp.Table).set("this", sqlglot.exp.to_identifier("changed"))  # a caller rewriting its tree
    second = bq_emulator.parse_one(SQL, read="bigquery")
    assert second == sqlglot.parse_one(SQL, read="bigquery")
    assert second.sql("bigquery") != first.sql("bigquery")


def test_calls_it_cannot_remember_go_to_sqlglot_as_they_are():
    tree = bq_emulator.parse_one(SQL, dialect="bigquery")
    assert tree == sqlglot.parse_one(SQL, dialect="bigquery")
