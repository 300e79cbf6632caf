//! The compiler's semantics, checked by running its programs in the cBPF
//! interpreter: for a given (architecture, syscall, arguments) the action the
//! kernel would take.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use super::arch::Arch;
use super::compile::*;
use super::interp::{check, run, Data};
use super::{Error, Filter};

fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile parses")
}

fn build(v: Value, native: Arch) -> Filter {
    let f = compile_for(&profile(v), native).expect("profile compiles");
    check(&f.program);
    f
}

fn err(v: Value) -> String {
    match compile_for(&profile(v), Arch::X86_64) {
        Ok(_) => panic!("profile compiled"),
        Err(e) => e.to_string(),
    }
}

/// The action for syscall `name` through ABI `arch`.
fn act(f: &Filter, arch: Arch, name: &str, args: &[u64]) -> u32 {
    let nr = arch.syscall(name).unwrap_or_else(|| panic!("{name} unknown on {arch:?}"));
    act_nr(f, arch, nr, args)
}

fn act_nr(f: &Filter, arch: Arch, nr: u32, args: &[u64]) -> u32 {
    run(&f.program, &Data::new(arch.audit(), nr, args)).0
}

const ERRNO_EPERM: u32 = RET_ERRNO | 1;

#[test]
fn seccomp_errno_rule_and_bad_arch() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
        Arch::X86_64,
    );
    assert_eq!(act(&f, Arch::X86_64, "mkdir", &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, Arch::X86_64, "mkdirat", &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_ALLOW);
    // Not listed: i386 and x32 calls get the bad-arch action, not the default.
    assert_eq!(act(&f, Arch::X86, "getpid", &[]), RET_BAD_ARCH);
    assert_eq!(act(&f, Arch::X32, "getpid", &[]), RET_BAD_ARCH);
    assert_eq!(act(&f, Arch::Aarch64, "getpid", &[]), RET_BAD_ARCH);
    assert!(!f.uses_notify());
    assert_eq!(f.flags, 0);
}

#[test]
fn seccomp_listed_compat_architectures_use_their_numbers() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS"],
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
        Arch::X86_64,
    );
    for arch in [Arch::X86_64, Arch::X86, Arch::X32] {
        assert_eq!(act(&f, arch, "mkdir", &[]), ERRNO_EPERM, "{arch:?}");
        assert_eq!(act(&f, arch, "rmdir", &[]), RET_ALLOW, "{arch:?}");
    }
    // x86_64's mkdir number (83) through i386 is i386's 83 (symlink... not mkdir).
    assert_eq!(act_nr(&f, Arch::X86, 83, &[]), RET_ALLOW);
    // AARCH64 cannot occur under an x86_64 kernel: no section, bad arch.
    assert_eq!(act(&f, Arch::Aarch64, "mkdirat", &[]), RET_BAD_ARCH);
}

#[test]
fn seccomp_aarch64_build_with_arm_compat() {
    let v = json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "architectures": ["SCMP_ARCH_ARM", "SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["mkdirat", "set_tls"], "action": "SCMP_ACT_ERRNO"}]});
    let f = build(v, Arch::Aarch64);
    assert_eq!(act(&f, Arch::Aarch64, "mkdirat", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::Arm, "mkdirat", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::Arm, "set_tls", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::Arm, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_BAD_ARCH);
}

fn reference(op: &str, arg: u64, v: u64, v2: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != v,
        "SCMP_CMP_LT" => arg < v,
        "SCMP_CMP_LE" => arg <= v,
        "SCMP_CMP_EQ" => arg == v,
        "SCMP_CMP_GE" => arg >= v,
        "SCMP_CMP_GT" => arg > v,
        "SCMP_CMP_MASKED_EQ" => arg & v == v2,
        _ => unreachable!(),
    }
}

/// Every operator against boundary values, on a 64-bit ABI (all 64 bits
/// compared) and on 32-bit ones (low half only, high half taken as zero).
#[test]
fn seccomp_operators_match_reference_semantics() {
    const VALUES: &[u64] = &[
        0,
        1,
        2,
        40,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x1_ffff_ffff,
        0x8000_0000_0000_0000,
        0xffff_ffff_0000_0000,
        0xffff_ffff_ffff_fffe,
        u64::MAX,
    ];
    let ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"];
    let mut checked = 0;
    for op in ops {
        for &v in VALUES {
            let twos: Vec<u64> = if op == "SCMP_CMP_MASKED_EQ" {
                VALUES.iter().map(|d| d & v).chain([1, 0x1_0000_0000]).collect()
            } else {
                vec![0]
            };
            for v2 in twos {
                let f = build(
                    json!({"defaultAction": "SCMP_ACT_ALLOW",
                           "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                           "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                                         "args": [{"index": 2, "value": v, "valueTwo": v2, "op": op}]}]}),
                    Arch::X86_64,
                );
                for &arg in VALUES {
                    let args = [!0, !0, arg, !0, !0, !0];
                    let want = if reference(op, arg, v, v2) { RET_ERRNO | 5 } else { RET_ALLOW };
                    assert_eq!(act(&f, Arch::X86_64, "getpid", &args), want, "x86_64: {arg:#x} {op} {v:#x} {v2:#x}");
                    let narrow = arg as u32 as u64;
                    let want = if reference(op, narrow, v, v2) { RET_ERRNO | 5 } else { RET_ALLOW };
                    for arch in [Arch::X86, Arch::X32] {
                        assert_eq!(act(&f, arch, "getpid", &args), want, "{arch:?}: {arg:#x} {op} {v:#x} {v2:#x}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000);
}

#[test]
fn seccomp_args_in_one_rule_are_anded_and_repeated_index_is_ored_like_runc() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["tkill"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 10, "op": "SCMP_CMP_GE"}, {"index": 0, "value": 20, "op": "SCMP_CMP_LE"}]}
        ]}),
        Arch::X86_64,
    );
    assert_eq!(act(&f, Arch::X86_64, "kill", &[1, 9]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86_64, "kill", &[1, 15]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "kill", &[2, 9]), RET_ALLOW);
    // runc: two tests of argument 0 become two rules, so >= 10 OR <= 20.
    for a in [0, 5, 15, 25, u64::MAX] {
        assert_eq!(act(&f, Arch::X86_64, "tkill", &[a]), ERRNO_EPERM, "{a}");
    }
}

#[test]
fn seccomp_first_matching_rule_wins_in_profile_order() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["write", "read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6},
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7, "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["close"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 100, "op": "SCMP_CMP_GT"}]},
            {"names": ["close"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 50, "op": "SCMP_CMP_GT"}]}
        ]}),
        Arch::X86_64,
    );
    assert_eq!(act(&f, Arch::X86_64, "write", &[1]), RET_ERRNO | 5);
    assert_eq!(act(&f, Arch::X86_64, "write", &[2]), RET_ERRNO | 6);
    // The unconditional rule for read comes first: the later one is dead.
    assert_eq!(act(&f, Arch::X86_64, "read", &[1]), RET_ERRNO | 6);
    assert_eq!(act(&f, Arch::X86_64, "close", &[200]), RET_KILL_PROCESS);
    assert_eq!(act(&f, Arch::X86_64, "close", &[60]), RET_TRAP);
    assert_eq!(act(&f, Arch::X86_64, "close", &[3]), RET_ALLOW);
}

#[test]
fn seccomp_rules_with_the_default_action_are_skipped_like_runc() {
    // Podman's profile lists syscalls with the default action before
    // allowing some of them with conditions; runc skips the former.
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}
        ]}),
        Arch::X86_64,
    );
    assert_eq!(act(&f, Arch::X86_64, "personality", &[8]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "personality", &[9]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_ALLOW);
    // A different errno is not the default action.
    assert_eq!(act(&f, Arch::X86_64, "getppid", &[]), RET_ERRNO | 38);
}

#[test]
fn seccomp_actions_and_errno_defaults() {
    let cases = [
        ("SCMP_ACT_KILL", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, RET_KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, RET_TRAP),
        ("SCMP_ACT_ERRNO", None, RET_ERRNO | 1),
        ("SCMP_ACT_ERRNO", Some(95), RET_ERRNO | 95),
        ("SCMP_ACT_TRACE", None, RET_TRACE | 1),
        ("SCMP_ACT_TRACE", Some(0xbeef), RET_TRACE | 0xbeef),
        ("SCMP_ACT_LOG", None, RET_LOG),
        ("SCMP_ACT_NOTIFY", None, RET_USER_NOTIF),
    ];
    for (action, errno, want) in cases {
        let mut rule = json!({"names": ["getpid"], "action": action});
        if let Some(e) = errno {
            rule["errnoRet"] = json!(e);
        }
        let f = build(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", "syscalls": [rule]}),
            Arch::X86_64,
        );
        assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), want, "{action}");
        assert_eq!(f.uses_notify(), action == "SCMP_ACT_NOTIFY");
    }
    let f = build(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}), Arch::X86_64);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_ERRNO | 38);
    let f = build(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}), Arch::X86_64);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_KILL_PROCESS);
}

#[test]
fn seccomp_flags() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
        Arch::X86_64,
    );
    // WAIT_KILLABLE_RECV without a listener is dropped (the kernel refuses it).
    assert_eq!(f.flags, FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW);
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/a.sock",
               "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        Arch::X86_64,
    );
    assert_eq!(f.flags, FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH | FLAG_WAIT_KILLABLE_RECV);
    assert!(f.uses_notify());
}

#[test]
fn seccomp_unknown_names_are_skipped() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_syscall", "socketcall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
        Arch::X86_64,
    );
    // socketcall exists only on i386, not listed: skipped on x86_64.
    assert_eq!(act(&f, Arch::X86_64, "mkdir", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_ALLOW);
}

#[test]
fn seccomp_enosys_for_syscalls_newer_than_the_profile() {
    let v = json!({"defaultAction": "SCMP_ACT_ERRNO",
                   "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                   "syscalls": [{"names": ["getpid", "openat2"], "action": "SCMP_ACT_ALLOW"}]});
    let f = build(v, Arch::X86_64);
    let openat2 = Arch::X86_64.syscall("openat2").unwrap();
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "mkdir", &[]), ERRNO_EPERM, "older than the newest named: default");
    assert_eq!(act_nr(&f, Arch::X86_64, openat2 + 1, &[]), RET_ERRNO | 38);
    assert_eq!(act_nr(&f, Arch::X86_64, 100_000, &[]), RET_ERRNO | 38);
    assert_eq!(act_nr(&f, Arch::X32, Arch::X32.syscall("openat2").unwrap() + 1, &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, Arch::X32, "mkdir", &[]), ERRNO_EPERM);
    assert_eq!(act_nr(&f, Arch::X86, 1000, &[]), RET_ERRNO | 38);
    // Never with a permissive default.
    let f = build(
        json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}),
        Arch::X86_64,
    );
    assert_eq!(act_nr(&f, Arch::X86_64, 1000, &[]), RET_LOG);
    // KILL defaults get it too (runc).
    let f = build(
        json!({"defaultAction": "SCMP_ACT_KILL", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}),
        Arch::X86_64,
    );
    assert_eq!(act_nr(&f, Arch::X86_64, 1000, &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, Arch::X86_64, "read", &[]), RET_KILL_THREAD);
}

#[test]
fn seccomp_invalid_profiles_name_the_field() {
    let cases = [
        (json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}), "linux.seccomp.defaultErrnoRet: only SCMP_ACT_ERRNO"),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}),
            "linux.seccomp.defaultErrnoRet: 5000 is not an errno",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}),
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}),
            "linux.seccomp.listenerMetadata: set without listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                                                                   {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "linux.seccomp.syscalls[1].errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno value, not SCMP_ACT_ALLOW",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[1].index: 6 is not a syscall argument (0 to 5)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath: required by SCMP_ACT_NOTIFY in linux.seccomp.syscalls[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a", "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for write",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names: must name",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names[1]: empty",
        ),
    ];
    for (v, want) in cases {
        let got = err(v.clone());
        assert!(got.starts_with(want), "{v}\n got: {got}\nwant: {want}");
    }
}

/// Operators, actions, architectures and flags are enums in oci-spec, so an
/// unknown one fails when config.json is parsed; spec::parse names the field.
#[test]
fn seccomp_unknown_operator_fails_at_parse_with_its_path() {
    let config = json!({
        "ociVersion": "1.2.0", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/"},
        "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"}, {"names": ["b"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["c"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["d"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]}]}}
    });
    let data = serde_json::to_vec(&config).unwrap();
    let e = crate::spec::parse(std::path::Path::new("config.json"), &data).unwrap_err().to_string();
    assert!(e.contains("linux.seccomp.syscalls[3].args[0].op"), "{e}");
    assert!(e.contains("SCMP_CMP_FOO"), "{e}");
}

#[test]
fn seccomp_long_programs_use_trampolines_and_too_long_is_an_error() {
    // Every syscall with two conditional rules: a program of a few thousand
    // instructions whose jumps span more than 255.
    let names: Vec<&str> = Arch::X86_64.table().iter().map(|(n, _)| *n).collect();
    let v = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 3, "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]},
        {"names": names, "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 0xf0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]});
    let f = build(v, Arch::X86_64);
    assert!(f.program.len() > 1000, "{}", f.program.len());
    assert!(f.program.iter().any(|i| i.code == super::bpf::JA), "expected trampolines");
    for (name, _) in Arch::X86_64.table() {
        assert_eq!(act(&f, Arch::X86_64, name, &[0, 7]), RET_ERRNO | 3, "{name}");
        assert_eq!(act(&f, Arch::X86_64, name, &[0x3f, 8]), RET_TRAP, "{name}");
        assert_eq!(act(&f, Arch::X86_64, name, &[0x4f, 8]), RET_ALLOW, "{name}");
    }
    let v = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": [
        {"names": names, "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_GT"}, {"index": 2, "value": 7, "op": "SCMP_CMP_LT"}]},
        {"names": names, "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_GE"}]}
    ]});
    match compile_for(&profile(v), Arch::X86_64) {
        Err(e @ Error::TooLong { .. }) => {
            assert!(e.to_string().contains("more than the kernel's limit of 4096"), "{e}")
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
}

// ---- Docker's default profile ----

/// Docker's default capabilities (moby oci/caps/defaults.go).
pub(super) const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's profile format → the OCI object dockerd passes to the runtime,
/// for a container with `caps` on `goarch` (moby profiles/seccomp: setupSeccomp).
pub(super) fn docker_to_oci(goarch: &str, caps: &[&str]) -> LinuxSeccomp {
    let docker: Value = serde_json::from_str(include_str!("testdata/docker-default.json")).unwrap();
    let native = match goarch {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        _ => unimplemented!(),
    };
    let mut archs = Vec::new();
    for m in docker["archMap"].as_array().unwrap() {
        if m["architecture"] == native {
            archs.push(m["architecture"].clone());
            archs.extend(m["subArchitectures"].as_array().cloned().unwrap_or_default());
        }
    }
    let has = |list: &Value, what: &str| list.as_array().is_some_and(|l| l.iter().any(|x| x == what));
    let kernel = (6u32, 1u32);
    let mut syscalls = Vec::new();
    for s in docker["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        if has(&exc["arches"], goarch) || caps.iter().any(|c| has(&exc["caps"], c)) {
            continue;
        }
        if inc["arches"].as_array().is_some_and(|a| !a.is_empty()) && !has(&inc["arches"], goarch) {
            continue;
        }
        if inc["caps"].as_array().is_some_and(|need| !need.iter().all(|c| caps.iter().any(|h| c == h))) {
            continue;
        }
        if let Some(min) = inc["minKernel"].as_str() {
            let mut p = min.split('.').map(|x| x.parse::<u32>().unwrap());
            if (p.next().unwrap(), p.next().unwrap_or(0)) > kernel {
                continue;
            }
        }
        let mut out = json!({"names": s["names"], "action": s["action"]});
        for k in ["errnoRet", "args"] {
            if !s[k].is_null() {
                out[k] = s[k].clone();
            }
        }
        syscalls.push(out);
    }
    profile(json!({
        "defaultAction": docker["defaultAction"],
        "defaultErrnoRet": docker["defaultErrnoRet"],
        "architectures": archs,
        "syscalls": syscalls,
    }))
}

#[test]
fn seccomp_docker_default_profile_amd64() {
    let p = docker_to_oci("amd64", DOCKER_CAPS);
    assert_eq!(p.architectures().as_ref().unwrap().len(), 3);
    let f = compile_for(&p, Arch::X86_64).unwrap();
    check(&f.program);
    const CLONE_NEWUSER: u64 = 0x1000_0000;
    const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00; // what glibc's pthread_create passes
    const SIGCHLD: u64 = 17;
    let x = Arch::X86_64;
    assert_eq!(act(&f, x, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, x, "read", &[]), RET_ALLOW);
    assert_eq!(act(&f, x, "keyctl", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "add_key", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "mount", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "unshare", &[CLONE_NEWUSER]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "chroot", &[]), RET_ALLOW, "CAP_SYS_CHROOT is a default capability");
    assert_eq!(act(&f, x, "ptrace", &[]), RET_ALLOW, "minKernel 4.8");
    assert_eq!(act(&f, x, "arch_prctl", &[]), RET_ALLOW);
    assert_eq!(act(&f, x, "clone", &[SIGCHLD]), RET_ALLOW);
    assert_eq!(act(&f, x, "clone", &[CLONE_THREAD_FLAGS]), RET_ALLOW);
    assert_eq!(act(&f, x, "clone", &[CLONE_NEWUSER | SIGCHLD]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "clone3", &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, x, "socket", &[2]), RET_ALLOW);
    assert_eq!(act(&f, x, "socket", &[40]), ERRNO_EPERM, "AF_VSOCK");
    assert_eq!(act(&f, x, "socket", &[40 | 1 << 32]), RET_ALLOW, "64-bit compare");
    for p in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(act(&f, x, "personality", &[p]), RET_ALLOW, "personality {p:#x}");
    }
    assert_eq!(act(&f, x, "personality", &[0x0040000]), ERRNO_EPERM);
    assert_eq!(act(&f, x, "personality", &[0x1_0000_0000]), ERRNO_EPERM);
    // The newest syscall the profile names is futex_waitv (449).
    assert_eq!(act_nr(&f, x, 449, &[]), RET_ALLOW);
    assert_eq!(act(&f, x, "kexec_load", &[]), ERRNO_EPERM, "not allowed, older than the newest named");
    // set_mempolicy_home_node (450) needs CAP_SYS_NICE, so it is not named:
    // like cachestat it is newer than the profile and gets ENOSYS (as runc).
    assert_eq!(act(&f, x, "set_mempolicy_home_node", &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, x, "cachestat", &[]), RET_ERRNO | 38, "newer than the profile: ENOSYS");
    // i386 and x32.
    assert_eq!(act(&f, Arch::X86, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86, "socketcall", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86, "keyctl", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86, "clone", &[CLONE_NEWUSER]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86, "clone", &[SIGCHLD | 0xffff_ffff_0000_0000]), RET_ALLOW, "32-bit ABI: low half only");
    assert_eq!(act(&f, Arch::X32, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X32, "execve", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X32, "keyctl", &[]), ERRNO_EPERM);
    assert_eq!(act_nr(&f, Arch::X32, 0x4000_0000 + 1000, &[]), RET_ERRNO | 38);
    assert_eq!(act(&f, Arch::Aarch64, "getpid", &[]), RET_BAD_ARCH);

    // The common case is fast: count instructions run for getpid.
    let (_, steps) = run(&f.program, &Data::new(x.audit(), 39, &[]));
    assert!(steps <= 20, "getpid took {steps} instructions");
    eprintln!("docker default profile (amd64): {} instructions; getpid runs {steps}", f.program.len());
}

#[test]
fn seccomp_docker_default_profile_with_cap_sys_admin() {
    let mut caps = DOCKER_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    let f = compile_for(&docker_to_oci("amd64", &caps), Arch::X86_64).unwrap();
    assert_eq!(act(&f, Arch::X86_64, "clone", &[0x1000_0000]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "clone3", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "mount", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::X86_64, "keyctl", &[]), ERRNO_EPERM);
}

#[test]
fn seccomp_docker_default_profile_arm64() {
    let f = compile_for(&docker_to_oci("arm64", DOCKER_CAPS), Arch::Aarch64).unwrap();
    check(&f.program);
    assert_eq!(act(&f, Arch::Aarch64, "getpid", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::Aarch64, "keyctl", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::Aarch64, "clone", &[0x1000_0000]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::Arm, "set_tls", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::Arm, "cacheflush", &[]), RET_ALLOW);
    assert_eq!(act(&f, Arch::Arm, "clone", &[17]), RET_ALLOW);
    assert_eq!(act(&f, Arch::Arm, "keyctl", &[]), ERRNO_EPERM);
    assert_eq!(act(&f, Arch::X86_64, "getpid", &[]), RET_BAD_ARCH);
}

/// Compile time of Docker's profile (x86_64 + x86 + x32); printed with
/// --nocapture. The runtime compiles once per create/exec.
#[test]
fn seccomp_docker_default_profile_compile_time() {
    let p = docker_to_oci("amd64", DOCKER_CAPS);
    let mut times: Vec<std::time::Duration> = (0..100)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(compile_for(std::hint::black_box(&p), Arch::X86_64).unwrap());
            start.elapsed()
        })
        .collect();
    times.sort();
    let each = times[times.len() / 2];
    eprintln!(
        "docker default profile: compile takes {each:?} (median of 100; min {:?}, max {:?}; debug build: {})",
        times[0],
        times[times.len() - 1],
        cfg!(debug_assertions)
    );
    assert!(each < std::time::Duration::from_millis(250), "{each:?}");
}

#[test]
fn seccomp_features_document() {
    let f = super::features();
    assert_eq!(f["enabled"], true);
    assert_eq!(f["actions"].as_array().unwrap().len(), 9);
    assert_eq!(f["operators"].as_array().unwrap().len(), 7);
    assert!(f["archs"].as_array().unwrap().iter().any(|a| a == "SCMP_ARCH_X86_64"));
    assert_eq!(f["knownFlags"].as_array().unwrap().len(), 4);
    let supported = f["supportedFlags"].as_array().unwrap();
    // Linux 4.17+ has these three.
    for flag in ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"] {
        assert!(supported.iter().any(|s| s == flag), "{flag} not in {supported:?}");
    }
}
