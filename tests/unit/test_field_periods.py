"""Which period a field flow covers by default: never past a failure, never leaving an ingested day out."""

import pandas as pd

from stacube.fields.run import indices_period, ingest_resume

T = pd.Timestamp


def _runs(*rows):
    return pd.DataFrame(rows, columns=["run_id", "period_start", "period_end", "finished_at"])


def test_a_manual_ingest_over_a_later_period_never_moves_the_next_start_past_a_failed_date():
    last = (T("2024-05-01"), T("2024-05-07"))  # the last ingest stopped at 05-07: a patch failed there
    assert ingest_resume(last, T("2024-05-09"), T("2024-05-11")) == T("2024-05-07")  # a manual run of 05-09..
    assert ingest_resume(last, T("2024-05-09"), T("2024-05-05")) == T("2024-05-05")  # it failed earlier itself
    assert ingest_resume(last, T("2024-05-07"), T("2024-05-11")) == T("2024-05-11")  # covered the gap: moves on
    assert ingest_resume(last, T("2024-04-01"), T("2024-04-20")) == T("2024-04-20")  # a backfill: its own end
    assert ingest_resume(None, T("2024-05-09"), T("2024-05-11")) == T("2024-05-11")
    # Runs that meet on the cube's axis (no step between them) are one after the other, not a gap
    days = pd.date_range("2024-05-01", "2024-05-20", freq="D")
    ended = (T("2024-05-01"), T("2024-05-04T23:59:59.999999"))
    assert ingest_resume(ended, T("2024-05-05"), T("2024-05-07"), days) == T("2024-05-07")
    assert ingest_resume(ended, T("2024-05-06"), T("2024-05-07"), days) == ended[1]  # 05-05 was skipped


def test_indices_cover_every_ingest_since_the_last_default_indices_run():
    ingested = _runs(("a", T("2024-05-01"), T("2024-05-07"), T("2024-05-08")),
                     ("b", T("2024-05-07"), T("2024-05-14"), T("2024-05-15")),
                     ("c", T("2024-05-14"), T("2024-05-21"), T("2024-05-22")))
    # Never indexed: all of it
    assert indices_period(ingested, _runs()) == (T("2024-05-01"), T("2024-05-21"), T("2024-05-22"))
    # Indexed as of a's record: b and c, whichever ran between
    indexed = _runs(("i1", T("2024-05-01"), T("2024-05-07"), T("2024-05-08")))
    assert indices_period(ingested, indexed) == (T("2024-05-07"), T("2024-05-21"), T("2024-05-22"))
    # A repair: an ingest that started back at a failed date brings that date into the next period
    repaired = pd.concat([ingested, _runs(("d", T("2024-05-03"), T("2024-05-28"), T("2024-05-29")))])
    indexed = _runs(("i2", T("2024-05-07"), T("2024-05-21"), T("2024-05-22")))
    assert indices_period(repaired, indexed) == (T("2024-05-03"), T("2024-05-28"), T("2024-05-29"))
    # Nothing new: the last ingest's data again; nothing ever ingested: None
    assert indices_period(ingested, indexed) == (T("2024-05-14"), T("2024-05-21"), T("2024-05-22"))
    assert indices_period(_runs(), _runs()) is None
