"""A Jepsen-style fault campaign against a `juggler up --hosts` lab
(benchmarks/faults.py runs it).

    nemesis.py   pure: the fault schedule, a function of the seed
    checker.py   pure: a history and the final state in, anomalies out
    history.py   what happened: operations, status updates, faults, leadership
    actions.py   the nemesis' hands: kill -9, SIGSTOP/SIGCONT, partitions, heals
    workload.py  a framework, apps, containers and drains driven while faults happen
    observe.py   who leads (GetLeader, etcd's election), the masters' final view
    leaks.py     what outlived the tasks (executors, cgroups, mounts, veths, leases)
    cluster.py   the lab: a 3-member etcd and `juggler up --masters 3 --hosts N`
"""
