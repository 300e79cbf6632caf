//! libcontainer's `sys::clone_process` is safe to call because it refuses a
//! caller with more than one thread (the child would inherit the locks the
//! other threads hold). A test binary is such a caller: libtest runs each
//! test on a thread of its own, and this one starts another to be sure.

#[test]
fn clone_from_a_multithreaded_process_is_refused() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv().ok());
    let err = libcontainer::sys::clone_process(0, None, &mut [], || 0).err().expect("clone refused");
    assert!(err.to_string().contains("threads"), "{err}");
    tx.send(()).unwrap();
    other.join().unwrap();
}
