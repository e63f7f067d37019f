"""Calls as durable jobs: every call is a `call_attempt` row, placed when due by one of two schedulers.

The database is the schedule (models/call_queue.py). Celery with the Redis broker runs it when
REDIS_URL is set (celery_app.py: beat polls, workers dial); otherwise the in-process scheduler
(scheduler.py) does, in the web process. Both run the same two steps (runner.py): `dispatch_due`
and `run_attempt`; every status change is a conditional UPDATE with one winner (attempt_store.py).

An attempt's moves:

    scheduled   -> queued       dispatch: due (scheduled_for <= now), its campaign active and within its pace
    queued      -> claimed      a worker's claim, one winner (a due scheduled one may be claimed directly)
    claimed     -> claimed      taken over by another worker once the claim is older than QUEUE_LEASE_SECONDS
    claimed     -> scheduled    not now: the campaign's pace or pause, or the policy's time rules (calling
                                hours, follow-up spacing, daily budget) at the policy's next_allowed_at
    claimed     -> skipped      the policy refuses for good (opted out, no consent, attempts used up)
    claimed     -> canceled     its campaign was canceled
    claimed     -> dialing      the policy allows (its decision stored on the attempt)
    dialing     -> in_progress  the dial function returned
    dialing     -> failed       the provider refused, or the worker was lost mid-dial (lease)
    in_progress -> completed    the call's outcome came back (`finish_call`), or failed with its error
    sweep:      claimed -> scheduled (worker lost before dialing), queued -> scheduled (message lost)

A finished attempt that reached nobody (no answer, busy, failed, voicemail) gets one successor after
the retry rule's backoff, inside the policy's time rules, until the attempt limit; a callback the
caller asked for gets one at that time, or at the next calling window.

Exactly once at the telephone is impossible across a crash in the middle of the provider's
request: up to the `dialing` mark an attempt is handed out again until it is dialed, after it never
again. An attempt whose worker was lost while dialing fails as interrupted and is retried after
its backoff, not redialed at once.
"""
