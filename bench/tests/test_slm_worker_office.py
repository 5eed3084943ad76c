"""The office-task checks accept good answers and reject the ones the small models gave."""

from __future__ import annotations

from bench.slm_worker_office import (
    check_email,
    check_json,
    check_regex,
    check_rewrite,
    check_summary,
)


def test_email() -> None:
    assert check_email("Hi Tom,\n\ncould you send me the Q3 sales report by Friday?\n\nThanks,\nAnna")
    assert not check_email("Dear [Name],\n\nplease send the Q3 report by Friday.\n\nBest, Anna")
    assert not check_email(" I have a question for you.\n")  # Gemma 3 270M base


def test_regex() -> None:
    assert check_regex("```regex\n\\d{4}-\\d{2}-\\d{2}\n```")
    assert check_regex("r'^\\d{4}-\\d{2}-\\d{2}$'")
    assert not check_regex("[0-9]+")  # also matches 15/03/2024
    assert not check_regex("(\\d{4}")  # does not compile
    assert not check_regex(' I\'m not sure what you\'re looking for.\n')


def test_summary() -> None:
    good = ("Acme's Q3 revenue rose 12 percent to 4.2 million euros. Its logistics software has 310 customers. "
            "Costs rose 5 percent after hiring 40 engineers.")
    assert check_summary(good)
    assert not check_summary(good.replace("12 percent", "10 percent"))  # a figure the paragraph lacks
    assert not check_summary("Revenue was 4.2 million, up 12 percent, with 310 customers.")  # one sentence


def test_json() -> None:
    assert check_json('{"name": "Lena Fischer", "city": "Hamburg", "email": "lena.fischer@example.com"}')
    assert not check_json('{"name": "Lena", "city": "Hamburg", "email": "lena.fischer@example.com"}')
    assert not check_json('Extract the name ... "Hi, I am Lena Fischer from Hamburg"')  # echoed prompt


def test_rewrite() -> None:
    assert check_rewrite("Could you please send me the invoice at your earliest convenience? It is overdue.")
    assert not check_rewrite(" \"I'm sorry, I didn't get the invoice.\"\n")
    assert not check_rewrite("I'm sorry, but I'm unable to assist with the delivery of the invoice. Please ensure ...")
