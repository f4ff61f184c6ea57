#![deny(warnings)]
//! Inherent methods with every receiver, trait impl methods, trait default methods.

use agent_profiler::profile_node;

#[derive(Default)]
struct Counter {
    n: u64,
}

impl Counter {
    #[profile_node("new")]
    fn new() -> Self {
        Self::default()
    }

    #[profile_node("by_value")]
    fn into_n(self) -> u64 {
        self.n
    }

    #[profile_node("by_ref")]
    fn get(&self) -> &u64 {
        &self.n
    }

    #[profile_node("by_mut")]
    fn bump(&mut self) -> &mut u64 {
        self.n += 1;
        &mut self.n
    }

    #[profile_node("boxed")]
    fn boxed(self: Box<Self>) -> u64 {
        self.n
    }

    #[profile_node("mut_unit")]
    fn reset(&mut self) {
        self.n = 0;
    }
}

trait Area {
    fn area(&self) -> f64;

    #[profile_node("default_method")]
    fn double(&self) -> f64 {
        self.area() * 2.0
    }
}

struct Square(f64);

impl Area for Square {
    #[profile_node("trait_impl")]
    fn area(&self) -> f64 {
        self.0 * self.0
    }
}

impl<T: Clone> From<Vec<T>> for Counter {
    #[profile_node("generic_trait_impl")]
    fn from(v: Vec<T>) -> Self {
        Counter { n: v.len() as u64 }
    }
}

fn main() {
    let mut c = Counter::new();
    *c.bump() += 1;
    assert_eq!(*c.get(), 2);
    c.reset();
    assert_eq!(Box::new(Counter::from(vec![1, 2])).boxed(), 2);
    assert_eq!(c.into_n(), 0);
    assert_eq!(Square(1.0).double(), 2.0);
}
