"""Words each engine refuses as a bare (unquoted) table or column name: the names that must stay quoted when SQL
is written with no more quoting than it needs (:func:`sqlmaster.engines.transpile.transpile`, ``quote="needed"``).

Declared as data, measured on the servers themselves rather than copied from a manual: every keyword the engine
lists (PostgreSQL 15 ``pg_get_keywords()``, MariaDB 10.11 ``information_schema.KEYWORDS``, DuckDB
``duckdb_keywords()``, and each other's lists) tried as ``SELECT word FROM (SELECT 1 AS "word") t`` and as
``CREATE TEMPORARY TABLE word``; a word is listed when either fails. DuckDB's are its ``reserved`` and
``type_function`` categories; only words that could be a name are kept. A word listed here that an engine would
accept costs only two quote characters.
"""

from __future__ import annotations

_POSTGRESQL = """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
    collation column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
    only or order outer overlaps placing primary references returning right select session_user similar some
    symmetric table tablesample then to trailing true union unique user using variadic verbose when where window
    with
"""

_MYSQL = """
    accessible add all alter analyze and as asc asensitive before between bigint binary blob both by call
    cascade case change char character check collate column condition constraint continue convert create cross
    current_date current_role current_time current_timestamp current_user cursor databases day_hour
    day_microsecond day_minute day_second dec decimal declare default delayed delete delete_domain_id desc
    describe deterministic distinct distinctrow div do_domain_ids double drop dual each else elseif enclosed
    escaped except exists exit explain false fetch float float4 float8 for force foreign from fulltext grant
    group having high_priority hour_microsecond hour_minute hour_second if ignore ignore_domain_ids in index
    infile inner inout insensitive insert int int1 int2 int3 int4 int8 integer intersect interval into is
    iterate join key keys kill leading leave left like limit linear lines load localtime localtimestamp lock
    long longblob longtext loop low_priority master_demote_to_replica master_demote_to_slave
    master_ssl_verify_server_cert match maxvalue mediumblob mediumint mediumtext middleint minute_microsecond
    minute_second mod modifies natural no_write_to_binlog not null numeric offset on optimize optionally or
    order out outer outfile over page_checksum parse_vcol_expr partition portion precision primary procedure
    purge range read read_write reads real recursive ref_system_id references regexp release rename repeat
    replace require resignal restrict return returning revoke right rlike row_number rows schemas
    second_microsecond select sensitive separator set show signal smallint spatial specific sql sql_big_result
    sql_buffer_result sql_cache sql_calc_found_rows sql_no_cache sql_small_result sqlexception sqlstate
    sqlwarning ssl starting stats_auto_recalc stats_persistent stats_sample_pages straight_join table terminated
    then tinyblob tinyint tinytext to trailing trigger true undo union unique unlock unsigned update usage use
    using utc_date utc_time utc_timestamp values varbinary varchar varcharacter varying when where while with
    write xor year_month zerofill
"""

_DUCKDB = """
    all analyse analyze and anti any array as asc asof asymmetric at authorization binary both by case cast
    check collate collation column columns concurrently constraint create cross default deferrable desc describe
    distinct do else end except false fetch for foreign freeze from full generated glob group having ilike in
    initially inner intersect into is isnull join lambda lateral leading left like limit map natural not notnull
    null offset on only or order outer overlaps pivot pivot_longer pivot_wider placing positional primary
    qualify references returning right select semi show similar some struct summarize symmetric table
    tablesample then to trailing true try_cast tuple union unique unpack unpivot using variadic verbose when
    where window with
"""

# engine name (sqlmaster.engines.ENGINE_NAMES) -> lower-cased words that need quoting as a name
RESERVED: dict[str, frozenset[str]] = {
    "postgresql": frozenset(_POSTGRESQL.split()),
    "mysql": frozenset(_MYSQL.split()),
    "duckdb": frozenset(_DUCKDB.split()),
    "sqlite": frozenset(),
}
