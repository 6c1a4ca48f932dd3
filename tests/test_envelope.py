from api.envelope import recase
from jobs.models import to_camel, to_snake


def test_names_round_trip():
    for snake in ("default_environment", "use_container_uid", "max_run_time", "id"):
        assert to_snake(to_camel(snake)) == snake
    assert to_camel("_links") == "_links"


def test_user_dicts_are_never_renamed():
    record = {"default_environment": {"my_var": "1"}, "final_state": {"ExitCode": 0},
              "state": {"some_key": 1}, "exec_list": [{"start_time": 1}]}
    camel = recase(record, camel=True)
    assert camel["defaultEnvironment"] == {"my_var": "1"}
    assert camel["finalState"] == {"ExitCode": 0}
    assert camel["state"] == {"some_key": 1}
    assert camel["execList"] == [{"startTime": 1}]
    assert recase(record, camel=False) == record
