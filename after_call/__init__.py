"""What happens once a call has ended, whoever saw it end (the worker, or Twilio's callbacks).

`outcome_writer.record_finished_call` journals the finished call locally, stores the outcome where it
outlives the session, then runs the after-call hooks in the order of its `AFTER_CALL_HOOKS` list; what
an outage or a crash left undone is replayed from the journal (`replay_journal`).
"""
