//! seccomp filters from `linux.seccomp`: errno actions, argument filters,
//! kill, with and without no_new_privs, compared with runc on the same
//! bundle.

use skiff_tests::*;

fn with_filter(b: &Bundle, syscalls: serde_json::Value) {
    b.edit(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls
        });
    });
}

#[test]
fn blocked_syscall_returns_the_chosen_errno() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                              {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"}]),
        );
        b.set_args(&[
            "sh",
            "-c",
            "mkdir /dev/shm/x 2>&1; echo status $?; touch /dev/shm/y && echo touched",
        ]);
    });
    assert_eq!(
        both.same_stdout(),
        "mkdir: can't create directory '/dev/shm/x': Permission denied\nstatus 1\ntouched\n"
    );
}

#[test]
fn argument_filter_blocks_only_matching_calls() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]),
        );
        b.set_args(&["sh", "-c", "sleep 5 & kill -9 $! 2>/dev/null && echo killed-9 || echo denied-9; kill -15 $! && echo killed-15"]);
    });
    assert_eq!(both.same_stdout(), "denied-9\nkilled-15\n");
}

#[test]
fn masked_equality_operator() {
    // SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo. Deny chmod to modes
    // that give others write access (mode & 0o002 == 0o002).
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 1, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
                              {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 2, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}]),
        );
        b.set_args(&["sh", "-c", "touch /dev/shm/f; chmod 755 /dev/shm/f && echo 755-ok; chmod 777 /dev/shm/f 2>/dev/null || echo 777-refused"]);
    });
    assert_eq!(both.same_stdout(), "755-ok\n777-refused\n");
}

#[test]
fn kill_action_kills_with_sigsys() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]),
        );
        b.set_args(&["sh", "-c", "echo before; mkdir /dev/shm/k; echo status $?"]);
    });
    assert_eq!(both.same_stdout(), "before\nstatus 159\n");
}

#[test]
fn filter_without_no_new_privileges() {
    // Loaded while the init still has CAP_SYS_ADMIN, before the user change.
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
        b.edit(|v| {
            v["process"]["noNewPrivileges"] = json!(false);
            v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        });
        b.set_args(&["sh", "-c", "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /dev/shm/x 2>/dev/null || echo denied"]);
    });
    assert_eq!(
        both.same_stdout(),
        "1000\nNoNewPrivs:\t0\nSeccomp:\t2\ndenied\n"
    );
}

#[test]
fn exec_gets_the_container_filter() {
    let (s, r) = on_both(|rt, b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
        let id = unique_id();
        rt.start_with(b, &id, &["sleep", "300"]);
        let out = rt
            .exec(
                &id,
                &["sh", "-c", "mkdir /dev/shm/z 2>/dev/null || echo denied"],
            )
            .stdout;
        rt.delete_force(&id).ok();
        out
    });
    assert_eq!(s, "denied\n");
    assert_eq!(s, r);
}
