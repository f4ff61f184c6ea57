//! Every function shape `#[profile_node]` supports, as real functions called from tests.
//!
//! The point is the expansion, not the timing (the behaviour tests are in `profiler.rs`): it
//! must compile in each shape, warning-free under the strictest lint set a user may choose
//! (`cargo clippy --all-targets -- -D warnings` checks this file), keep `Send` futures `Send`
//! and keep `#[track_caller]` reporting the caller.
#![deny(warnings, clippy::all, clippy::pedantic)]

mod support {
    pub mod poll;
}

use std::panic::Location;

use support::poll::block_on;

fn assert_send<T: Send>(value: T) -> T {
    value
}

mod shapes {
    use agent_profiler::profile_node;
    use std::fmt::Display;
    use std::future::Future;
    use std::io;
    use std::panic::Location;

    #[profile_node("free_unit")]
    pub fn free_unit() {}

    #[profile_node("free_value")]
    pub fn free_value(x: u32) -> u32 {
        x + 1
    }

    #[profile_node("explicit_unit")]
    #[allow(clippy::unused_unit)] // the shape under test
    pub fn explicit_unit() -> () {}

    #[profile_node("one_line")]
    pub fn one_line() -> u8 {
        1
    }

    #[profile_node("generic")]
    pub fn generic<T, U>(t: T, u: &U) -> String
    where
        T: Display,
        U: Display + ?Sized,
    {
        format!("{t}{u}")
    }

    #[profile_node("lifetimes")]
    pub fn lifetimes<'a>(x: &'a mut String) -> &'a str {
        x.push('!');
        x.as_str()
    }

    #[profile_node("elided")]
    pub fn elided(x: &[u8]) -> &[u8] {
        &x[1..]
    }

    #[profile_node("unsafe_fn")]
    /// # Safety
    /// `p` must point at a readable `u8`.
    pub unsafe fn unsafe_fn(p: *const u8) -> u8 {
        // SAFETY: the caller's promise.
        unsafe { *p }
    }

    #[profile_node("extern_c")]
    pub extern "C" fn extern_c(x: i32) -> i32 {
        x * 2
    }

    #[profile_node("never")]
    pub fn never(msg: &str) -> ! {
        panic!("{msg}")
    }

    #[profile_node("track_caller_value")]
    #[track_caller]
    pub fn track_caller_value() -> &'static Location<'static> {
        Location::caller()
    }

    #[profile_node("track_caller_unit")]
    #[track_caller]
    pub fn track_caller_unit(out: &mut Option<&'static Location<'static>>) {
        *out = Some(Location::caller());
    }

    #[profile_node("track_caller_result")]
    #[track_caller]
    pub fn track_caller_result(fail: bool) -> Result<u32, String> {
        if fail {
            return Err("early".to_owned());
        }
        Ok(1)
    }

    #[profile_node("cfg_param")]
    pub fn cfg_param(#[cfg(test)] a: u8, #[cfg(not(test))] a: u16, b: u8) -> u32 {
        u32::from(a) + u32::from(b)
    }

    #[profile_node("pattern_params")]
    pub fn pattern_params((a, b): (u8, u8), [c, _]: [u8; 2]) -> u8 {
        a + b + c
    }

    #[profile_node("impl_arg")]
    pub fn impl_arg(x: impl Display) -> String {
        x.to_string()
    }

    #[profile_node("impl_return")]
    pub fn impl_return(n: u8) -> impl Iterator<Item = u8> + Clone {
        (0..n).map(|i| i * 2)
    }

    #[profile_node("nested_impl_return")]
    pub fn nested_impl_return(ok: bool) -> Result<impl Display, io::Error> {
        if ok {
            Ok(5)
        } else {
            Err(io::Error::other("no"))
        }
    }

    #[profile_node("question_mark")]
    pub fn question_mark(s: &str) -> Result<u32, std::num::ParseIntError> {
        let n: u32 = s.parse()?;
        Ok(n * 2)
    }

    #[profile_node("early_return")]
    pub fn early_return(x: i32) -> Box<dyn Display> {
        if x < 0 {
            return Box::new("negative");
        }
        Box::new(x)
    }

    #[profile_node("io_result")]
    pub fn io_result(fail: bool) -> io::Result<()> {
        if fail {
            Err(io::Error::other("failed"))
        } else {
            Ok(())
        }
    }

    #[profile_node("inner_attrs_and_items")]
    pub fn inner_attrs_and_items(wide: u64) -> u8 {
        #![allow(clippy::cast_possible_truncation)] // inner attributes still apply to the body
        use std::convert::identity;
        const ONE: u8 = 1;
        fn two() -> u8 {
            2
        }
        identity(ONE) + two() + wide as u8
    }

    #[profile_node("generic_value")]
    pub fn generic_value<T: Default>() -> T {
        T::default()
    }

    #[derive(Default)]
    pub struct Counter {
        pub n: u64,
        pub name: String,
    }

    impl Counter {
        #[profile_node("method_self")]
        #[must_use]
        pub fn into_n(self) -> u64 {
            self.n
        }

        #[profile_node("method_ref")]
        #[must_use]
        pub fn name(&self) -> &str {
            &self.name
        }

        #[profile_node("method_mut")]
        pub fn bump(&mut self) -> &mut u64 {
            self.n += 1;
            &mut self.n
        }

        #[profile_node("method_box")]
        #[must_use]
        pub fn boxed(self: Box<Self>) -> Box<Self> {
            self
        }

        #[profile_node("associated")]
        #[must_use]
        pub fn new(name: &str) -> Self {
            Self {
                n: 0,
                name: name.to_owned(),
            }
        }

        #[profile_node("async_method")]
        pub async fn async_name(&self) -> usize {
            self.name.len()
        }
    }

    pub trait Shape {
        fn area(&self) -> f64;

        #[profile_node("trait_default")]
        fn double_area(&self) -> f64 {
            self.area() * 2.0
        }

        #[profile_node("trait_async_default")]
        #[allow(async_fn_in_trait)]
        async fn async_area(&self) -> f64 {
            self.area()
        }
    }

    pub struct Square(pub f64);

    impl Shape for Square {
        #[profile_node("trait_impl")]
        fn area(&self) -> f64 {
            self.0 * self.0
        }

        #[profile_node("trait_impl_async")]
        async fn async_area(&self) -> f64 {
            self.0 * self.0
        }
    }

    impl Drop for Square {
        #[profile_node("drop")]
        fn drop(&mut self) {}
    }

    #[profile_node("async_free")]
    pub async fn async_free(x: u32) -> u32 {
        x + 1
    }

    #[profile_node("async_unit")]
    pub async fn async_unit() {}

    #[profile_node("todo_sync")]
    pub fn todo_sync() -> u8 {
        todo!()
    }

    #[profile_node("todo_track_caller")]
    #[track_caller]
    pub fn todo_track_caller() -> u8 {
        todo!()
    }

    #[profile_node("todo_async")]
    pub async fn todo_async() -> u8 {
        todo!()
    }

    #[profile_node("panic_sync")]
    pub fn panic_sync(msg: &str) -> u8 {
        panic!("{msg}")
    }

    #[profile_node("track_caller_coerces")]
    #[track_caller]
    pub fn track_caller_coerces() -> Vec<Box<dyn Display>> {
        vec![Box::new(1), Box::new("two")]
    }

    #[profile_node("panic_track_caller")]
    #[track_caller]
    pub fn panic_track_caller(msg: &str) -> u8 {
        panic!("{msg}")
    }

    #[profile_node("panic_async")]
    pub async fn panic_async(msg: &str) -> u8 {
        panic!("{msg}")
    }

    #[profile_node("async_never")]
    pub async fn async_never(msg: &str) -> ! {
        panic!("{msg}")
    }

    #[profile_node("async_question_mark")]
    pub async fn async_question_mark(s: &str) -> Result<u32, Box<dyn std::error::Error>> {
        let n: u32 = s.parse()?;
        if n == 0 {
            return Err("zero".into());
        }
        Ok(n)
    }

    #[profile_node("async_early_return")]
    pub async fn async_early_return(x: i32) -> Box<dyn Display + Send> {
        if x < 0 {
            return Box::new("negative");
        }
        Box::new(x)
    }

    #[profile_node("async_borrow")]
    pub async fn async_borrow<'a>(s: &'a str, n: usize) -> &'a str {
        &s[..n]
    }

    #[profile_node("async_impl_return")]
    pub async fn async_impl_return() -> impl Display {
        7
    }

    #[profile_node("async_generic")]
    pub async fn async_generic<T: Send + Clone>(t: &T) -> T {
        t.clone()
    }

    #[profile_node("async_io_result")]
    pub async fn async_io_result() -> io::Result<u8> {
        Ok(1)
    }

    #[profile_node("async_tail")]
    pub fn async_tail(x: u8) -> impl Future<Output = u8> + Send {
        let y = x + 1;
        async move { y * 2 }
    }

    #[profile_node("async_tail_ref")]
    pub fn async_tail_ref<'a>(s: &'a str) -> impl Future<Output = Result<&'a str, String>> + 'a {
        async move {
            if s.is_empty() {
                return Err("empty".to_owned());
            }
            Ok(s)
        }
    }

    #[profile_node("async_tail_boxed")]
    pub fn async_tail_boxed(x: u8) -> std::pin::Pin<Box<dyn Future<Output = u8> + Send + 'static>> {
        Box::pin(async move { x })
    }

    #[async_trait::async_trait]
    pub trait Fetch {
        async fn fetch(&self, key: &str) -> Result<String, String>;

        #[profile_node("async_trait_default")]
        async fn fetch_twice(&self, key: &str) -> Result<String, String> {
            let one = self.fetch(key).await?;
            Ok(one.repeat(2))
        }
    }

    pub struct Store;

    #[async_trait::async_trait]
    impl Fetch for Store {
        #[profile_node("async_trait_impl")]
        async fn fetch(&self, key: &str) -> Result<String, String> {
            if key.is_empty() {
                return Err("empty key".to_owned());
            }
            Ok(key.to_uppercase())
        }
    }

    #[profile_node("explicit_crate_path", crate = ::agent_profiler)]
    pub fn explicit_crate_path() -> u8 {
        3
    }

    #[profile_node("outer_of_two")]
    #[profile_node("inner_of_two")]
    pub fn two_nodes(x: u8) -> Result<u8, String> {
        x.checked_add(1).ok_or_else(|| "overflow".to_owned())
    }

    #[profile_node("outer_of_two_async")]
    #[profile_node("inner_of_two_async")]
    pub async fn two_nodes_async(x: u8) -> u8 {
        x
    }

    #[profile_node("shadowing")]
    pub fn shadowing(__ap_ret: u8, __ap_guard: u8) -> u8 {
        // User names that look like generated ones are distinct variables (mixed-site
        // hygiene), so this is the user's parameter.
        __ap_ret + __ap_guard
    }
}

use shapes::{Counter, Fetch, Shape, Square, Store};

/// One-line bodies (`fn f(x: u32) -> u32 { x + 1 }`) of every shape, kept on one line:
/// nested in the generated block, such a body once drew `unused_braces`; here clippy's
/// pedantic group and `-D warnings` check that no lint reaches the user's code.
#[rustfmt::skip]
mod one_line {
    use agent_profiler::profile_node;
    use std::future::Future;
    use std::io;
    use std::panic::Location;
    use std::pin::Pin;

    #[profile_node("ol_unit")] pub fn unit(out: &mut u32) { *out += 1 }
    #[profile_node("ol_value")] pub fn value(x: u32) -> u32 { x + 1 }
    #[profile_node("ol_no_params")] pub fn no_params() -> u32 { 7 }
    #[profile_node("ol_result")] pub fn result(s: &str) -> Result<u32, std::num::ParseIntError> { s.parse() }
    #[profile_node("ol_io_result")] pub fn io_result(fail: bool) -> io::Result<u8> { if fail { Err(io::Error::other("x")) } else { Ok(1) } }
    #[profile_node("ol_impl_trait")] pub fn impl_trait(n: u8) -> impl Iterator<Item = u8> { 0..n }
    #[profile_node("ol_never")] pub fn never() -> ! { panic!("never") }
    #[profile_node("ol_track_caller")] #[track_caller] pub fn track_caller() -> u32 { Location::caller().line() }
    #[profile_node("ol_track_caller_unit")] #[track_caller] pub fn track_caller_unit(out: &mut u32) { *out = Location::caller().line() }
    #[profile_node("ol_async_unit")] pub async fn async_unit(out: &mut u32) { *out += 1 }
    #[profile_node("ol_async_value")] pub async fn async_value(x: u32) -> u32 { x + 1 }
    #[profile_node("ol_retrieve")] pub async fn retrieve(query: &str) -> Vec<String> { vec![query.to_owned()] }
    #[profile_node("ol_async_result")] pub async fn async_result(s: &str) -> Result<u32, std::num::ParseIntError> { s.parse() }
    #[profile_node("ol_async_tail")] pub fn async_tail(x: u32) -> impl Future<Output = u32> + Send { async move { x + 1 } }
    #[profile_node("ol_boxed_tail")] pub fn boxed_tail(x: u32) -> Pin<Box<dyn Future<Output = Result<u32, String>> + Send>> { Box::pin(async move { Ok(x) }) }

    pub struct S(pub u32);

    impl S {
        #[profile_node("ol_method")] #[must_use] pub fn get(&self) -> u32 { self.0 }
        #[profile_node("ol_method_mut")] pub fn bump(&mut self) { self.0 += 1 }
        #[profile_node("ol_async_method")] pub async fn get_async(&self) -> u32 { self.0 }
    }
}

#[test]
fn one_line_bodies_of_every_shape_run() {
    let mut n = 0;
    one_line::unit(&mut n);
    assert_eq!(n, 1);
    assert_eq!(one_line::value(1), 2);
    assert_eq!(one_line::no_params(), 7);
    assert_eq!(one_line::result("3"), Ok(3));
    assert!(one_line::io_result(true).is_err());
    assert_eq!(one_line::io_result(false).ok(), Some(1));
    assert_eq!(one_line::impl_trait(3).count(), 3);
    assert!(std::panic::catch_unwind(|| one_line::never()).is_err());
    assert_eq!(one_line::track_caller(), line!());
    let mut line = 0;
    one_line::track_caller_unit(&mut line);
    assert_eq!(line, line!() - 1);
    block_on(assert_send(one_line::async_unit(&mut n)));
    assert_eq!(n, 2);
    assert_eq!(block_on(assert_send(one_line::async_value(1))), 2);
    assert_eq!(block_on(assert_send(one_line::retrieve("q"))), ["q"]);
    assert!(block_on(one_line::async_result("x")).is_err());
    assert_eq!(block_on(assert_send(one_line::async_tail(1))), 2);
    assert_eq!(block_on(one_line::boxed_tail(5)), Ok(5));
    let mut s = one_line::S(1);
    s.bump();
    assert_eq!(s.get(), 2);
    assert_eq!(block_on(assert_send(s.get_async())), 2);
}

#[test]
fn sync_shapes() {
    shapes::free_unit();
    assert_eq!(shapes::free_value(1), 2);
    shapes::explicit_unit();
    assert_eq!(shapes::one_line(), 1);
    assert_eq!(shapes::generic(1, "a"), "1a");
    let mut s = String::from("x");
    assert_eq!(shapes::lifetimes(&mut s), "x!");
    assert_eq!(shapes::elided(&[1, 2]), &[2]);
    // SAFETY: points at a live u8.
    assert_eq!(unsafe { shapes::unsafe_fn(&7) }, 7);
    assert_eq!(shapes::extern_c(2), 4);
    assert!(std::panic::catch_unwind(|| shapes::never("boom")).is_err());
    assert_eq!(shapes::cfg_param(1, 2), 3);
    assert_eq!(shapes::pattern_params((1, 2), [3, 4]), 6);
    assert_eq!(shapes::impl_arg(5), "5");
    assert_eq!(shapes::impl_return(3).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(shapes::nested_impl_return(true).unwrap().to_string(), "5");
    assert!(shapes::nested_impl_return(false).is_err());
    assert_eq!(shapes::question_mark("4"), Ok(8));
    assert!(shapes::question_mark("x").is_err());
    assert_eq!(shapes::early_return(-1).to_string(), "negative");
    assert!(shapes::io_result(true).is_err());
    assert_eq!(shapes::inner_attrs_and_items(1), 4);
    assert_eq!(shapes::generic_value::<u8>(), 0);
    assert_eq!(shapes::explicit_crate_path(), 3);
    assert_eq!(shapes::shadowing(1, 2), 3);
    assert_eq!(shapes::two_nodes(1), Ok(2));
    assert_eq!(block_on(shapes::two_nodes_async(1)), 1);
    assert_eq!(shapes::track_caller_result(true), Err("early".to_owned()));
    assert_eq!(shapes::track_caller_coerces().len(), 2);
}

#[test]
fn method_shapes() {
    let mut c = Counter::new("c");
    *c.bump() += 10;
    assert_eq!(c.n, 11);
    assert_eq!(c.name(), "c");
    let c = Box::new(c).boxed();
    assert_eq!(c.into_n(), 11);
    let sq = Square(2.0);
    assert!((sq.double_area() - 8.0).abs() < f64::EPSILON);
}

#[test]
fn async_shapes() {
    assert_eq!(block_on(shapes::async_free(1)), 2);
    block_on(shapes::async_unit());
    assert!(std::panic::catch_unwind(|| block_on(shapes::async_never("boom"))).is_err());
    assert!(std::panic::catch_unwind(shapes::todo_sync).is_err());
    assert!(std::panic::catch_unwind(|| shapes::todo_track_caller()).is_err());
    assert!(std::panic::catch_unwind(|| block_on(shapes::todo_async())).is_err());
    assert!(std::panic::catch_unwind(|| shapes::panic_sync("boom")).is_err());
    assert!(std::panic::catch_unwind(|| shapes::panic_track_caller("boom")).is_err());
    assert!(std::panic::catch_unwind(|| block_on(shapes::panic_async("boom"))).is_err());
    assert_eq!(block_on(shapes::async_question_mark("3")).unwrap(), 3);
    assert!(block_on(shapes::async_question_mark("0")).is_err());
    assert!(block_on(shapes::async_question_mark("x")).is_err());
    assert_eq!(
        block_on(shapes::async_early_return(-1)).to_string(),
        "negative"
    );
    assert_eq!(block_on(shapes::async_borrow("hello", 2)), "he");
    assert_eq!(block_on(shapes::async_impl_return()).to_string(), "7");
    assert_eq!(block_on(shapes::async_generic(&4_u8)), 4);
    assert_eq!(block_on(shapes::async_io_result()).unwrap(), 1);
    assert_eq!(block_on(shapes::async_tail(1)), 4);
    assert_eq!(block_on(shapes::async_tail_ref("a")), Ok("a"));
    assert!(block_on(shapes::async_tail_ref("")).is_err());
    assert_eq!(block_on(shapes::async_tail_boxed(9)), 9);
    assert_eq!(block_on(Store.fetch("ab")).unwrap(), "AB");
    assert_eq!(block_on(Store.fetch_twice("ab")).unwrap(), "ABAB");
    assert!(block_on(Store.fetch("")).is_err());
    let c = Counter::new("abc");
    assert_eq!(block_on(c.async_name()), 3);
    let sq = Square(3.0);
    assert!((block_on(sq.async_area()) - 9.0).abs() < f64::EPSILON);
}

#[test]
fn async_bodies_that_are_send_give_send_futures() {
    assert_eq!(block_on(assert_send(shapes::async_free(1))), 2);
    assert_eq!(block_on(assert_send(shapes::async_generic(&1_u64))), 1);
    assert!(block_on(assert_send(shapes::async_question_mark("1"))).is_ok());
    assert_eq!(block_on(assert_send(shapes::async_tail(0))), 2);
    // A method taking `&self` on a `Sync` type.
    let c = Counter::new("send");
    assert_eq!(block_on(assert_send(c.async_name())), 4);
    assert!(block_on(assert_send(Store.fetch("k"))).is_ok());
}

/// The macro's part of outcome detection: every way out of a body reaches the probe (the
/// runtime's behaviour tests cover the rest).
#[test]
fn errors_are_classified_whichever_way_the_body_returns_them() {
    let analyzer = agent_profiler::BottleneckAnalyzer::new();
    let scope = agent_profiler::ProfilerScope::new(&analyzer);
    let _ = shapes::question_mark("x"); // `?`
    let _ = shapes::question_mark("1"); // tail `Ok`
    let _ = shapes::io_result(true); // tail `Err` through the `io::Result` alias
    let _ = block_on(shapes::async_question_mark("x")); // `?` in an async body
    let _ = block_on(shapes::async_question_mark("0")); // early `return Err`
    let _ = block_on(shapes::async_tail_ref("")); // `return Err` in an async tail
    let _ = block_on(Store.fetch("")); // `#[async_trait]` body
    drop(scope);

    let outcomes = |id: &str| {
        let node = analyzer.get_node(id).expect(id);
        (node.outcomes.ok, node.outcomes.error)
    };
    assert_eq!(outcomes("question_mark"), (1, 1));
    assert_eq!(outcomes("io_result"), (0, 1));
    assert_eq!(outcomes("async_question_mark"), (0, 2));
    assert_eq!(outcomes("async_tail_ref"), (0, 1));
    assert_eq!(outcomes("async_trait_impl"), (0, 1));
}

#[test]
fn track_caller_reports_the_callers_location() {
    let line = line!() + 1;
    let loc = shapes::track_caller_value();
    assert_eq!(loc.file(), file!());
    assert_eq!(loc.line(), line);

    let mut out = None;
    let line = line!() + 1;
    shapes::track_caller_unit(&mut out);
    let loc = out.expect("set by the call");
    assert_eq!((loc.file(), loc.line()), (file!(), line));
    // And not a location inside the expansion.
    assert_ne!(loc.line(), Location::caller().line());
}

#[test]
fn unwrap_panic_inside_a_profiled_track_caller_fn_points_at_the_caller() {
    #[agent_profiler::profile_node("tc_unwrap")]
    #[track_caller]
    fn must(v: Option<u8>) -> u8 {
        v.unwrap()
    }

    // The hook is process-wide and other tests may panic meanwhile: keep this thread's.
    let (tx, rx) = std::sync::mpsc::channel();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(loc) = info.location() {
            let thread = std::thread::current().id();
            let _ = tx.send((thread, loc.file().to_owned(), loc.line()));
        }
    }));
    let line = line!() + 1;
    let result = std::panic::catch_unwind(|| must(None));
    std::panic::set_hook(previous);
    assert!(result.is_err());
    let me = std::thread::current().id();
    let (_, file, panic_line) = rx
        .try_iter()
        .find(|(thread, _, _)| *thread == me)
        .expect("the panic was seen by the hook");
    assert_eq!((file.as_str(), panic_line), (file!(), line));
}
