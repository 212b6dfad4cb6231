"""The config.json builder: Kubernetes' process rules, users, security defaults, cgroup limits."""
from __future__ import annotations

import pytest

from kubelet.runtime.interface import ContainerConfig, InvalidConfig, Mount, Resources, SecurityContext
from kubelet.runtime.oci import (DEFAULT_CAPS, SandboxRefs, build_spec, capabilities, cpu_shares, merge_env,
                                 process_args, resolve_user)

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:33:\napp:x:1000:\nvideo:x:44:app,www\naudio:x:29:app\n"
SANDBOX = SandboxRefs(netns="/run/netns/p", ipc_ns="/s/ns/ipc", uts_ns="/s/ns/uts", hostname="pod-a",
                      pod_files={"/etc/hosts": "/s/etc/hosts", "/etc/resolv.conf": "/s/etc/resolv.conf"})
IMAGE = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
         "config": {"Entrypoint": ["/entry"], "Cmd": ["--serve"], "Env": ["PATH=/img/bin", "A=image"],
                    "WorkingDir": "/srv", "User": "www"}}


def spec(**kw: object) -> dict:
    c = ContainerConfig(name="c", image="img", **kw)  # type: ignore[arg-type]
    return build_spec(c, IMAGE, "/rootfs", SANDBOX, "pkube/poduid/cid", PASSWD, GROUP, host_nofile_hard=20000)


@pytest.mark.parametrize("command,args,expected", [
    (None, None, ["/entry", "--serve"]),
    (["/bin/app"], None, ["/bin/app"]),                 # command drops the image CMD too
    (None, ["--debug"], ["/entry", "--debug"]),         # args replace CMD only
    (["/bin/app"], ["x", "y"], ["/bin/app", "x", "y"]),
    (None, [], ["/entry"]),                             # explicit empty args clear CMD
])
def test_command_and_args_follow_kubernetes(command, args, expected) -> None:
    assert process_args(command, args, ["/entry"], ["--serve"]) == expected


def test_no_command_at_all_is_a_config_error() -> None:
    with pytest.raises(InvalidConfig, match="no command"):
        build_spec(ContainerConfig(name="c", image="i"), {"config": {}}, "/r", SANDBOX, "p/c")


def test_env_merge_container_wins_and_keeps_order() -> None:
    env = merge_env(["PATH=/img/bin", "A=image", "B=image"], [("A", "mine"), ("C", "new")], "pod-a")
    assert env == ["PATH=/img/bin", "A=mine", "B=image", "HOSTNAME=pod-a", "C=new"]


def test_image_user_name_resolved_with_supplementary_groups() -> None:
    p = spec()["process"]
    assert p["user"] == {"uid": 33, "gid": 33, "additionalGids": [44]}
    assert p["cwd"] == "/srv"
    assert p["args"] == ["/entry", "--serve"]


@pytest.mark.parametrize("image_user,run_as_user,run_as_group,expected", [
    ("", None, None, (0, 0)),
    ("app", None, None, (1000, 1000)),
    ("1000", None, None, (1000, 1000)),
    ("4242", None, None, (4242, 0)),        # a uid without a passwd entry is fine, group root
    ("app:www", None, None, (1000, 33)),
    ("www", 1000, None, (1000, 1000)),      # runAsUser overrides the image user, group from passwd
    ("www", 5000, 7, (5000, 7)),
])
def test_user_resolution(image_user, run_as_user, run_as_group, expected) -> None:
    u = resolve_user(image_user, run_as_user, run_as_group, PASSWD, GROUP)
    assert (u.uid, u.gid) == expected


def test_unknown_user_name_is_a_config_error() -> None:
    with pytest.raises(InvalidConfig, match="unable to find user ghost"):
        resolve_user("ghost", None, None, PASSWD, GROUP)


def test_run_as_non_root() -> None:
    root_image = {"config": {"Cmd": ["sh"]}}
    with pytest.raises(InvalidConfig, match="image will run as root"):
        build_spec(ContainerConfig(name="c", image="i", security=SecurityContext(run_as_non_root=True)),
                   root_image, "/r", SANDBOX, "p/c")
    with pytest.raises(InvalidConfig, match="runAsUser breaks non-root policy"):
        spec(security=SecurityContext(run_as_non_root=True, run_as_user=0))
    with pytest.raises(InvalidConfig, match="non-numeric user \\(www\\)"):
        spec(security=SecurityContext(run_as_non_root=True))
    assert spec(security=SecurityContext(run_as_non_root=True, run_as_user=1000))["process"]["user"]["uid"] == 1000


def test_security_defaults() -> None:
    s = spec()
    caps = s["process"]["capabilities"]
    assert caps["bounding"] == ["CAP_" + c for c in DEFAULT_CAPS] == caps["effective"]
    assert "CAP_SYS_ADMIN" not in caps["bounding"]
    assert s["process"]["noNewPrivileges"] is True
    assert "/proc/kcore" in s["linux"]["maskedPaths"] and "/proc/sys" in s["linux"]["readonlyPaths"]
    assert s["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert s["root"] == {"path": "/rootfs", "readonly": False}
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]


def test_privileged_and_capability_changes() -> None:
    assert capabilities(["NET_ADMIN"], ["KILL", "cap_chown"], False) == \
        [c for c in ("CAP_" + x for x in DEFAULT_CAPS) if c not in ("CAP_KILL", "CAP_CHOWN")] + ["CAP_NET_ADMIN"]
    assert capabilities(["NET_BIND_SERVICE"], ["ALL"], False) == ["CAP_NET_BIND_SERVICE"]
    p = spec(security=SecurityContext(privileged=True))
    assert "CAP_SYS_ADMIN" in p["process"]["capabilities"]["bounding"]
    assert p["process"]["noNewPrivileges"] is False and "maskedPaths" not in p["linux"]
    assert spec(security=SecurityContext(allow_privilege_escalation=True))["process"]["noNewPrivileges"] is False
    assert spec(security=SecurityContext(read_only_root_filesystem=True))["root"]["readonly"] is True


def test_namespaces_join_the_sandbox() -> None:
    ns = {n["type"]: n.get("path") for n in spec()["linux"]["namespaces"]}
    assert ns == {"pid": None, "mount": None, "network": "/run/netns/p", "ipc": "/s/ns/ipc", "uts": "/s/ns/uts",
                  "cgroup": None}
    assert "hostname" not in spec()  # runc refuses a hostname in a joined UTS namespace


def test_resources() -> None:
    r = spec(resources=Resources(cpu_limit_millis=250, cpu_request_millis=100, memory_limit_bytes=64 << 20,
                                 pids_limit=50))["linux"]
    assert r["cgroupsPath"] == "pkube/poduid/cid"
    assert r["resources"]["cpu"] == {"shares": 102, "quota": 25000, "period": 100000}
    assert r["resources"]["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert r["resources"]["pids"] == {"limit": 50}
    assert cpu_shares(None) == 2 and cpu_shares(1) == 2 and cpu_shares(1000) == 1024
    assert spec(resources=Resources(cpu_limit_millis=1))["linux"]["resources"]["cpu"]["quota"] == 1000


def test_mounts_pod_files_and_volumes() -> None:
    s = spec(mounts=[Mount("/data", "/vol/data", read_only=True), Mount("/etc/hosts", "/vol/myhosts")])
    by_dest = {m["destination"]: m for m in s["mounts"]}
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= by_dest.keys()
    assert by_dest["/etc/resolv.conf"]["source"] == "/s/etc/resolv.conf"
    assert by_dest["/etc/hosts"]["source"] == "/vol/myhosts"  # a volume over a pod file wins
    assert by_dest["/data"]["source"] == "/vol/data" and "ro" in by_dest["/data"]["options"]
    with pytest.raises(InvalidConfig, match="must be absolute"):
        spec(mounts=[Mount("data", "/vol/data")])


def test_host_network_container_gets_no_network_namespace_of_its_own() -> None:
    refs = SandboxRefs(netns="/proc/self/ns/net", ipc_ns="/i", uts_ns="/u", hostname="h", host_network=True)
    spec = build_spec(ContainerConfig(name="c", image="busybox", command=["true"]), {}, "/rootfs", refs, "cg")
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]
    refs.host_network = False
    spec = build_spec(ContainerConfig(name="c", image="busybox", command=["true"]), {}, "/rootfs", refs, "cg")
    assert {"type": "network", "path": "/proc/self/ns/net"} in spec["linux"]["namespaces"]


def test_host_pid_and_ipc_containers_stay_in_the_nodes_namespaces_and_share_its_dev_shm() -> None:
    refs = SandboxRefs(netns="/n", ipc_ns="", uts_ns="/u", hostname="h", host_pid=True, host_ipc=True)
    spec = build_spec(ContainerConfig(name="c", image="busybox", command=["true"]), {}, "/rootfs", refs, "cg")
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["mount", "network", "uts", "cgroup"]
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    # an ephemeral container targeting a container of a hostPID pod joins that one's (the node's) namespace
    spec = build_spec(ContainerConfig(name="c", image="busybox", command=["true"]), {}, "/rootfs", refs, "cg",
                      pid_ns="/proc/42/ns/pid")
    assert {"type": "pid", "path": "/proc/42/ns/pid"} in spec["linux"]["namespaces"]
    refs = SandboxRefs(netns="/n", ipc_ns="/i", uts_ns="/u", hostname="h")
    spec = build_spec(ContainerConfig(name="c", image="busybox", command=["true"]), {}, "/rootfs", refs, "cg")
    assert {"type": "pid"} in spec["linux"]["namespaces"] and {"type": "ipc", "path": "/i"} in spec["linux"]["namespaces"]
    assert next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")["type"] == "tmpfs"
