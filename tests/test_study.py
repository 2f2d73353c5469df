"""The study chain's own rules: BLAS on one thread inside a chain, whatever the caller set."""

from threadpoolctl import threadpool_info, threadpool_limits

from vertaug import study


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_one_blas_thread_inside_and_the_callers_setting_after():
    with threadpool_limits(limits=2, user_api="blas"):
        assert _blas_threads() == {2}
        with study.one_blas_thread():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


def test_a_procedure_chain_runs_on_one_blas_thread(monkeypatch):
    seen = []

    def run(model, plan, trajectories=None):
        seen.append(_blas_threads())
        return "outcome"

    monkeypatch.setattr(study, "procedure_runner", lambda plan: ("VP", run))
    with threadpool_limits(limits=2, user_api="blas"):
        out = study.run_procedure(None, object(), thermal=False, mechanics=False)
    assert seen == [{1}] and out.outcome == "outcome"
