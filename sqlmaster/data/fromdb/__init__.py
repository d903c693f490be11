"""``sqlmaster data from-db``: learn a user's schema from the database itself — question/SQL pairs synthesized over
its own tables, values and keys, executed on it, split and written with a card.

Module map (module | what it holds | who calls it):

| module | what it holds | who calls it |
|---|---|---|
| `build` | `from_db`: sources → profiles → candidates → kept pairs → split → files | cli, quickstart, bench |
| `profile` | the schema and a few values per column, read through the engine layer within bounds | build, datasets |
| `families` | the SQL families at three levels (filter ... set operations), each drawn with its question | build |
| `questions` | the question grammar: several styles per SQL shape | families |
| `words` | names as words (``singer_in_concert`` → "singers in concerts") | families, schema_filter |
| `keep` | a candidate is kept when it runs in time and says something; duplicates, skeleton caps | build |
| `split` | train/test by a seeded hash of (skeleton, literals): no test pair shares both with a training pair | build |
| `render` | the live schema as prompt text: CREATE TABLE with keys and example values | schema_filter |
| `schema_filter` | the tables a question needs when the schema does not fit the prompt's budget | build, datasets |
| `card` | dataset.json: sources fingerprinted (never a credential), counts per family and level, time | build |

The path of one pair: ``build.synthesize_source`` opens the database read-only (``sqlmaster.engines.open_database``)
→ ``profile.read_profile`` → a ``families`` function draws a ``Candidate`` (SQL + ``questions.ask``) →
``keep.Keeper.offer`` runs it under a time limit → ``schema_filter.schema_for`` renders its context →
``split.split_pairs`` → ``build._write``.
"""

from sqlmaster.data.fromdb.build import FromDbSettings, from_db

__all__ = ["FromDbSettings", "from_db"]
