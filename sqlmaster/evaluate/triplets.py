"""``sqlmaster eval make-dataset``: generate (question, context, answer) triplets with an OpenAI chat model.

The original project built its 10-example evaluation set this way: one one-shot prompt sent repeatedly to
``gpt-4-0125-preview`` at temperature 0.8. Two faults of that set are fixed here: a triplet is kept only if its
answer runs on its own ``CREATE TABLE`` context (an unexecutable gold answer cannot score anything), and
duplicates (the same question on the same schema) are removed.

    OPENAI_API_KEY=... sqlmaster eval make-dataset --output triplets.jsonl --n 50
    sqlmaster eval run --model tiny --adapter runs/tiny --output-dir runs/tiny --dataset triplets.jsonl
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from sqlmaster.data.examples import Example
from sqlmaster.data.validity import gold_runs
from sqlmaster.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4-0125-preview"
TEMPERATURE = 0.8

# The original's user message, verbatim.
USER_PROMPT = (
    "Generate a set of question, context, and answer for querying a SQL database: "
    "- **Question**: Pose a human query related to a specific task or information retrieval from a SQL database. "
    "- **Context**: Describe the data table structure relevant to the question, using `CREATE TABLE` statements "
    "only. "
    "- **Answer**: Provide the SQL query that effectively solves the human query, based on the given context. "
    "Return a JSON object with `question`, `context`, `answer`."
)

# The one-shot assistant answer, written from the original's description (total revenue per product category
# for customers in the USA in 2022, over Customers/Orders/OrderDetails/Products/Categories). Its answer runs on
# its context (tested), so the example the model imitates is itself valid.
ONE_SHOT_ANSWER = json.dumps(
    {
        "question": "What was the total revenue per product category from customers in the USA in 2022?",
        "context": (
            "CREATE TABLE Customers (CustomerID INTEGER PRIMARY KEY, CustomerName VARCHAR(100), Country VARCHAR(50)); "
            "CREATE TABLE Orders (OrderID INTEGER PRIMARY KEY, CustomerID INTEGER, OrderDate DATE, "
            "FOREIGN KEY (CustomerID) REFERENCES Customers(CustomerID)); "
            "CREATE TABLE OrderDetails (OrderDetailID INTEGER PRIMARY KEY, OrderID INTEGER, ProductID INTEGER, "
            "Quantity INTEGER, UnitPrice DECIMAL(10, 2), FOREIGN KEY (OrderID) REFERENCES Orders(OrderID), "
            "FOREIGN KEY (ProductID) REFERENCES Products(ProductID)); "
            "CREATE TABLE Products (ProductID INTEGER PRIMARY KEY, ProductName VARCHAR(100), CategoryID INTEGER, "
            "FOREIGN KEY (CategoryID) REFERENCES Categories(CategoryID)); "
            "CREATE TABLE Categories (CategoryID INTEGER PRIMARY KEY, CategoryName VARCHAR(100))"
        ),
        "answer": (
            "SELECT c.CategoryName, SUM(od.Quantity * od.UnitPrice) AS TotalRevenue "
            "FROM Customers cu "
            "JOIN Orders o ON cu.CustomerID = o.CustomerID "
            "JOIN OrderDetails od ON o.OrderID = od.OrderID "
            "JOIN Products p ON od.ProductID = p.ProductID "
            "JOIN Categories c ON p.CategoryID = c.CategoryID "
            "WHERE cu.Country = 'USA' AND o.OrderDate BETWEEN '2022-01-01' AND '2022-12-31' "
            "GROUP BY c.CategoryName"
        ),
    }
)


def messages() -> list[tuple[str, str]]:
    """The one-shot conversation: the request, the example answer, the request again."""
    return [("human", USER_PROMPT), ("ai", ONE_SHOT_ANSWER), ("human", USER_PROMPT)]


_FENCED_JSON = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def parse_triplet(text: str) -> Example | None:
    """The triplet in a model reply (bare JSON or a fenced ```json block); None if there is none."""
    match = _FENCED_JSON.search(text)
    candidate = match.group(1) if match else text[text.find("{") : text.rfind("}") + 1]
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    fields = [data.get(k) for k in ("question", "context", "answer")]
    if not all(isinstance(f, str) and f.strip() for f in fields):
        return None
    question, context, answer = (str(f).strip() for f in fields)
    return Example(question, context, answer.rstrip(";").strip())


def make_chat_model(model: str) -> Any:
    if not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError(
            "make-dataset calls the OpenAI API and OPENAI_API_KEY is not set. Export OPENAI_API_KEY "
            "(in the cluster: the sqlmaster-keys Secret)"
        )
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model, temperature=TEMPERATURE)


def generate_triplets(
    chat: Any, n: int, max_requests: int | None = None, concurrency: int = 4
) -> tuple[list[Example], dict[str, int]]:
    """Ask ``chat`` for triplets until ``n`` valid, distinct ones are kept or ``max_requests`` replies are used.

    Returns the kept triplets and counts of what was dropped and why.
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1, not {n}")
    budget = max_requests if max_requests is not None else 3 * n + 5
    kept: dict[tuple[str, str], Example] = {}
    stats = {"requests": 0, "unparseable": 0, "not_executable": 0, "duplicates": 0}
    conversation = messages()
    while len(kept) < n and stats["requests"] < budget:
        wave = min(n - len(kept), budget - stats["requests"])
        replies = chat.batch([conversation] * wave, config={"max_concurrency": concurrency})
        stats["requests"] += wave
        for reply in replies:
            triplet = parse_triplet(getattr(reply, "content", reply))
            if triplet is None:
                stats["unparseable"] += 1
            elif not gold_runs(triplet.context, triplet.answer):
                stats["not_executable"] += 1
            elif triplet.key() in kept:
                stats["duplicates"] += 1
            elif len(kept) < n:
                kept[triplet.key()] = triplet
    return list(kept.values()), stats


def check_output(output: Path) -> Path:
    """Refuse an unusable output path before any API call is paid for."""
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"--output {output} is a directory. Pass a file path, e.g. {output / 'triplets.jsonl'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror
        raise ConfigError(f"cannot create the folder of --output {output} ({reason}). Choose a writable path") from None
    if not os.access(output.parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise ConfigError(f"cannot write --output {output} (permission denied). Choose a writable path") from None
    return output


def api_error(exc: Exception) -> Exception | None:
    """The project's error for a failed API call: transient (exit 1, retry) or configuration (exit 2)."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai comes with langchain-openai
        openai = None  # type: ignore[assignment]
    name = type(exc).__name__
    if openai is not None:
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ConfigError(f"the OpenAI API refused the key ({name}). Set a valid OPENAI_API_KEY")
        if isinstance(exc, openai.NotFoundError):
            return ConfigError(f"the OpenAI API does not know the model ({exc}). Pass another --llm")
        transient = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
        if isinstance(exc, transient):
            return TransientError(
                f"the OpenAI API could not be reached or is overloaded ({name}: {exc}). Retry later; check the "
                "network or proxy"
            )
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(f"the OpenAI API could not be reached ({name}: {exc}). Retry later")
    return None


def make_dataset(
    output: Path,
    n: int = 10,
    model: str = DEFAULT_MODEL,
    *,
    chat: Any = None,
    max_requests: int | None = None,
    concurrency: int = 4,
) -> int:
    """Generate ``n`` triplets into ``output`` (JSONL, written atomically); returns how many were written.

    ``chat`` is any LangChain chat model (tests pass a fake one); by default ``ChatOpenAI(model, 0.8)``. The
    output path and ``n`` are checked before the first request.
    """
    from sqlmaster.atomic import atomic_open
    from sqlmaster.evaluate.score import SAFE_ENCODING_ERRORS, json_line

    if n < 1:
        raise ConfigError(f"--n must be >= 1, not {n}")
    output = check_output(output)
    chat = chat or make_chat_model(model)
    try:
        triplets, stats = generate_triplets(chat, n, max_requests, concurrency)
    except Exception as exc:
        mapped = api_error(exc)
        if mapped is None:
            raise
        raise mapped from None
    with atomic_open(output, errors=SAFE_ENCODING_ERRORS) as handle:
        for triplet in triplets:
            handle.write(json_line(triplet.to_dict()) + "\n")
    log.info("make-dataset: kept %d of %d replies (%s)", len(triplets), stats["requests"], stats)
    if len(triplets) < n:
        log.warning("make-dataset: only %d of the %d requested triplets were valid and distinct", len(triplets), n)
    return len(triplets)
