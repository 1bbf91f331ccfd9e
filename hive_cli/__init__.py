"""hive_cli: the ``amplihack-hive`` command and the supervisor of a hive's agent processes.

    app.py                Typer commands (parsing + wiring only); ``main`` maps errors to exits
    operations.py         what commands do (list, delete, learn rounds, ask, logs)
    lifecycle.py          agent states (running/starting/stopped/crashed), start + readiness
    supervisor.py         processes: spawn, PID files with start time, signals, reaping
    agent_link.py         status / learn / ask requests to agents over the hive's transport
    transport_factory.py  opens the hive's transport through hive_core.transports.registry
    azure_deploy.py       ``start --target azure``: the deployment parameters, deploy.sh
    inputs.py             what ``learn`` reads (lines or JSONL, limits, round robin)
    render.py             Rich for humans, one JSON document for ``--json``
    errors.py             exit codes and one-line messages
"""
