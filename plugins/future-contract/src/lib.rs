//! A test plugin built against a contract version the agent does not speak
//! (`warden:resource@0.6.0`): the agent must reject it with a message that
//! names both versions.

wit_bindgen::generate!({
    inline: r#"
        package warden:%resource@0.6.0;

        interface resource-type {
            describe: func() -> string;
        }

        world plugin {
            export resource-type;
        }
    "#,
    world: "plugin",
});

struct Future;

impl exports::warden::resource::resource_type::Guest for Future {
    fn describe() -> String {
        "a type from the future".to_string()
    }
}

export!(Future);
