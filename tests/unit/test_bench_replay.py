"""The benchmark's recorded-SQL replay: server log → transactions → a re-runnable pgbench script."""

from __future__ import annotations

import pytest

from bench._replay import BENCH_APP, _parse_params, build_script, parse_log

NEW_ID = "11111111-1111-4111-8111-111111111111"
OLD_ID = "22222222-2222-4222-8222-222222222222"

LOG = f"""\
@@|10||LOG:  statement: BEGIN; SELECT set_config('app.role', 'partner', true)
@@|10||LOG:  execute __asyncpg_stmt_1__: -- a comment with $9 and :colon
	INSERT INTO referrals (id, partner_id, notes) VALUES ($1, $2, $3)
@@|10||DETAIL:  Parameters: $1 = '{NEW_ID}', $2 = '{OLD_ID}', $3 = 'it''s, fine'
@@|11||LOG:  statement: BEGIN
@@|10||LOG:  statement: COMMIT
@@|11||LOG:  execute <unnamed>: SELECT id, event_id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
@@|11||DETAIL:  Parameters: $1 = '200'
@@|11||LOG:  execute <unnamed>: DELETE FROM outbox WHERE id = any($1::bigint[])
@@|11||DETAIL:  Parameters: $1 = '{{1,2}}'
@@|11||LOG:  statement: COMMIT
@@|12|{BENCH_APP}|LOG:  statement: SELECT count(*) FROM referrals
@@|13||LOG:  execute <unnamed>: SELECT $1::text, $2::text
@@|13||DETAIL:  Parameters: $1 = NULL, $2 = ''
@@|14||LOG:  statement: BEGIN
@@|14||LOG:  statement: SELECT 1
"""


def test_parameters_unquote_and_keep_nulls() -> None:
    assert _parse_params("$1 = 'a''b', $2 = NULL, $3 = 'x, $4 = y'") == {1: "a'b", 2: None, 3: "x, $4 = y"}


def test_log_becomes_units_in_start_order_without_the_benchmarks_own_or_unfinished_ones() -> None:
    capture = parse_log(LOG)
    firsts = [u[0].sql.split()[0] for u in capture.units]
    # pid 10's transaction, pid 11's, pid 13's single statement; pid 12 is the benchmark; pid 14 never ended.
    assert firsts == ["BEGIN;", "BEGIN", "SELECT"]
    assert capture.units[0][1].params == {1: NEW_ID, 2: OLD_ID, 3: "it's, fine"}


def test_script_draws_new_ids_fresh_and_deletes_what_its_claim_took() -> None:
    script = build_script(parse_log(LOG), existing={OLD_ID})
    assert script.fresh_uuids == 1
    assert "SELECT gen_random_uuid() AS u0\n\\gset" in script.text
    assert "VALUES (:u0, :k0, :k1)" in script.text
    assert script.defines == {"k0": OLD_ID, "k1": "it's, fine", "k2": "200"}
    assert "AS oids FROM (\nSELECT id, event_id FROM outbox" in script.text
    assert "DELETE FROM outbox WHERE id = any(:oids::bigint[]);" in script.text
    # NULL inline; the empty string inline too (pgbench -D refuses empty values).
    assert "SELECT NULL::text, ''::text;" in script.text
    # Comments are stripped: their "$9" and ":colon" would confuse pgbench.
    assert "comment" not in script.text
    assert script.transactions == 2


def test_a_colon_word_in_sql_text_is_refused() -> None:
    log = "@@|1||LOG:  statement: SELECT 'a:b'\n"
    with pytest.raises(ValueError, match="variable"):
        build_script(parse_log(log), existing=set())


def test_a_claim_that_deletes_in_the_same_statement_is_replayed_as_is() -> None:
    log = (
        "@@|11||LOG:  statement: BEGIN\n"
        "@@|11||LOG:  execute <unnamed>: DELETE FROM outbox WHERE id IN"
        " (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id, payload\n"
        "@@|11||DETAIL:  Parameters: $1 = '200'\n"
        "@@|11||LOG:  statement: COMMIT\n"
    )
    script = build_script(parse_log(log), existing=set())
    assert (
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT :k0 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, payload;" in script.text
    )
    assert "gset" not in script.text and "oids" not in script.text
    assert script.statements == 3


def test_an_array_of_new_ids_draws_each_fresh() -> None:
    other = "33333333-3333-4333-8333-333333333333"
    log = (
        "@@|11||LOG:  statement: BEGIN\n"
        "@@|11||LOG:  execute <unnamed>: INSERT INTO outbox (event_id, subject)"
        " SELECT e, s FROM unnest($1::uuid[], $2::text[]) AS t (e, s)\n"
        f"@@|11||DETAIL:  Parameters: $1 = '{{{NEW_ID},{other}}}', $2 = '{{a,b}}'\n"
        "@@|11||LOG:  statement: COMMIT\n"
    )
    script = build_script(parse_log(log), existing=set())
    assert "unnest(ARRAY[:u0, :u1]::uuid[], :k0::text[])" in script.text
    assert script.fresh_uuids == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3 WHERE id = $4",
        "UPDATE audit_log a SET seq = u.seq FROM unnest($1::bigint[]) AS u (seq) WHERE a.id = u.seq",
    ],
)
def test_the_audit_sealers_transaction_is_left_out(sql: str) -> None:
    # A row is sealed once (a trigger refuses a second seal): replayed, it would abort pgbench.
    log = (
        "@@|11||LOG:  statement: BEGIN\n"
        f"@@|11||LOG:  execute <unnamed>: {sql}\n"
        "@@|11||DETAIL:  Parameters: $1 = '{1}'\n"
        "@@|11||LOG:  statement: COMMIT\n"
        "@@|12||LOG:  statement: SELECT 1\n"
    )
    script = build_script(parse_log(log), existing=set())
    assert "audit_log" not in script.text
    assert script.skipped == 1
