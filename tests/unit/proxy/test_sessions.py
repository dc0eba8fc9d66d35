"""LastModels: the model each Claude Code session used last, in bounded memory."""

from __future__ import annotations

from extproc.proxy.sessions import LastModels


def test_a_switch_names_the_model_the_session_left():
    models = LastModels()
    assert models.switch("s1", "anthropic/claude-sonnet-4-5") is None, "a new session"
    assert models.switch("s1", "anthropic/claude-sonnet-4-5") is None, "the same model"
    assert models.switch("s2", "deepseek/deepseek-chat") is None, "another session"
    assert models.switch("s1", "deepseek/deepseek-chat") == "anthropic/claude-sonnet-4-5"
    assert models.switch("s1", "deepseek/deepseek-chat") is None


def test_requests_without_a_session_are_not_remembered():
    models = LastModels()
    assert models.switch("", "a") is None
    assert models.switch("", "b") is None
    assert len(models) == 0


def test_the_least_recently_seen_session_is_forgotten_first():
    models = LastModels(limit=2)
    models.switch("old", "a")
    models.switch("kept", "a")
    models.switch("old", "a")  # seen again: now the most recent
    models.switch("new", "a")  # pushes out "kept"
    assert len(models) == 2
    assert models.switch("kept", "b") is None, "forgotten: counts as a new session"
    assert models.switch("new", "b") == "a", "still remembered"
    assert models.switch("old", "b") is None, "forgotten in turn when 'kept' came back"
