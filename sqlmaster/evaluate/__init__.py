"""Evaluation: generate SQL for held-out questions, score it by execution, report it.

Module map (module | what it holds | who calls it). ``tests/test_house.py`` checks that it names every module here
and no other; docs/design.md shows it (``python scripts/gen-files.py``).

| module | what it holds | who calls it |
|---|---|---|
| `runner` | `sqlmaster eval run`: datasets → generation → the scorer → metrics.json per dataset | cli, quickstart |
| `datasets` | the evaluation sets (the run's test split, Spider dev, triplet files), never trained on | runner |
| `generate` | `GenerationSettings`; batched generation (transformers): greedy or N candidates | runner, generate_vllm |
| `resume` | `predictions.partial.jsonl`: generated batches on disk, read back by a rerun (fingerprinted) | runner |
| `constrain` | per-example SQL grammars (schema, question spans, db values); logits processor | generate, runner |
| `literal_case` | the case a training split writes question spans in, by table shape (for `constrain`) | runner |
| `generate_vllm` | the same with vLLM on a GPU, the LoRA adapter served unmerged | runner |
| `score` | `sqlmaster eval score`, the one scoring path: rows → workers → `Score` → files | cli, runner, triplets |
| `server_score` | `eval score --db`: gold and prediction on one real database through the engine layer | cli |
| `isolated` | worker processes with a watchdog: a crash or hang costs one example, not the run | score |
| `engine_score` | `--engine duckdb`: gold and prediction transpiled, run on rebuilt databases, golds checked | score |
| `execution` | execution accuracy: gold plans and results, row comparison; example/database/gold caches | score |
| `conventions` | SQL run under `official` (first statement, no DISTINCT) or `strict` | score, execution, runner, cli |
| `synth` | databases synthesized from a CREATE TABLE context on which the gold returns something telling | execution |
| `sandbox` | untrusted SQL on in-memory SQLite: read-only; time, row, byte, CPU limits | synth, execution, score |
| `exact_match` | exact match after normalisation (case, whitespace, quoting, a trailing semicolon) | score |
| `sqlast` | small sqlglot helpers (parse once, top-level ORDER BY, ...) | synth, execution, exact_match |
| `cache` | `BoundedCache`, the one bounded (LRU) cache class of every scorer cache | execution, score |
| `causes` | why a prediction missed (`CAUSES`): its error, or its parse tree beside the gold | score, compare, report |
| `compare` | `sqlmaster eval compare`: two runs paired per example, the difference with a paired bootstrap | cli |
| `stats` | bootstrap confidence intervals and latency percentiles | score, runner |
| `mutants` | single-edit wrong variants of a gold query (does the scorer tell them apart?) | tests, bench |
| `embedding` | embedding distance, the original project's metric, kept for comparison | runner |
| `report` | `sqlmaster eval report`: leaderboard (JSON, Markdown) and charts over run directories | cli, quickstart |
| `html_report` | `report.html`: leaderboard, charts and an example explorer in one file (inline JS, CSS) | report |
| `langsmith_sync` | optional LangSmith mirror: the dataset once, each evaluation as an experiment | runner |
| `triplets` | `sqlmaster eval make-dataset`: (question, context, answer) triplets from an OpenAI model | cli |
| `vote` | of N sampled queries, the most common result's, or the first returning rows (`vote_rule`) | runner |

The path of one prediction, in the order it runs (``sqlmaster eval score``; ``eval run`` generates the predictions
first with ``generate`` and then calls ``score.score_rows``):

1. ``score.read_records`` validates each line into an ``InputRow`` (the user's fields apart from its database path).
2. ``score.score_records`` orders the tasks so that an example's predictions are adjacent and hands them to an
   ``isolated.IsolatedPool``; each worker applies a ``score._ScoreWorker`` holding that worker's ``ScorerState``.
3. ``score.score_example`` finds the databases (``score._databases``): a real file from ``execution.DatabaseCache``,
   or ``execution.ExampleCache`` → ``execution.prepare_example`` → ``synth.synthesize`` (which runs the context and
   the gold in ``sandbox``); the gold's results per convention (``GoldCache`` / ``PreparedExample.gold_results``:
   ``conventions.apply_convention`` → ``execution.plan_gold`` (``sqlast``) → ``execution.run_gold``), or a
   ``GoldError`` when the gold does not run.
4. ``score._exact_match`` → ``exact_match.exact_match`` (parses the prediction only when it differs from the gold).
5. ``score._verdicts``: for each convention ``conventions.apply_convention`` → ``execution.score_on_connections`` →
   ``sandbox.run_query`` on each database → ``execution.compare``: one ``execution.Verdict``, cached per
   (databases, gold, prediction). A miss gets its cause: ``score._miss_cause`` → ``causes.classify``.
6. Back in the parent: a ``score.Score`` per row → ``score.output_record`` (records.jsonl), ``score.compute_metrics``
   (``stats``) → ``score.write_results`` (atomic files).
"""
