//! A test plugin whose `describe` traps: the agent must refuse to load it,
//! with a reason, and carry on.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};

struct DescribeTraps;
struct Never;

impl Guest for DescribeTraps {
    type Instance = Never;

    fn describe() -> TypeInfo {
        panic!("describe-traps: deliberate trap in describe")
    }

    fn validate(_: Properties) -> Result<(), PropertyError> {
        Ok(())
    }
}

impl GuestInstance for Never {
    fn open(_: String, _: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(Never))
    }
    fn online(&self) -> Result<(), String> {
        Ok(())
    }
    fn offline(&self) -> Result<(), String> {
        Ok(())
    }
    fn terminate(&self) {}
    fn looks_alive(&self) -> Health {
        Health::Healthy
    }
    fn is_alive(&self) -> Health {
        Health::Healthy
    }
    fn control(&self, _: String, _: String) -> Result<String, String> {
        Err("no controls".to_string())
    }
}

warden_sdk::export_plugin!(DescribeTraps);
