//! Just enough of the W3C WebDriver protocol to drive Debian's headless
//! Chromium through chromedriver: a session, navigation, elements, clicks,
//! keys, scripts, screenshots and the browser's log.
//!
//! Spoken as JSON over ureq (which the host already uses) rather than
//! through a WebDriver crate: the dozen calls the console's tests make are
//! short, blocking calls suit tests that poll, and no async client stack
//! or new dependency tree comes in for them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The Escape key, as WebDriver's key codes write it.
pub const ESCAPE: &str = "\u{E00C}";
/// The Tab key.
pub const TAB: &str = "\u{E004}";

const CHROMIUM: &str = "/usr/bin/chromium";

/// Why the browser tests cannot run here, if they cannot: Debian's
/// `chromium` or `chromedriver` is missing.
pub fn missing_browser() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "{CHROMIUM} is not installed (apt-get install chromium)"
        ));
    }
    match Command::new("chromedriver").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("chromedriver is not installed (apt-get install chromium-driver)".to_string()),
    }
}

/// A chromedriver process on a free port; killed when dropped.
pub struct Driver {
    child: Child,
    base: String,
    http: ureq::Agent,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Start chromedriver and wait until it says it is ready.
    pub fn start(port: SocketAddr) -> Driver {
        let child = Command::new("chromedriver")
            .arg(format!("--port={}", port.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let driver = Driver {
            child,
            base: format!("http://{port}"),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = driver.request("GET", "/status", None);
            if ready.is_ok_and(|status| status["ready"] == true) {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver call: its `value`, or the driver's error as text.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, Some(body)) => self.http.post(&url).send_json(body),
            (_, None) => self.http.post(&url).send_json(json!({})),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: HTTP {status}: {}",
                answer["value"]
            ));
        }
        Ok(answer["value"].clone())
    }

    /// A new headless Chromium session, its browser log kept at every level.
    pub fn session(&self) -> Session<'_> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--disable-gpu"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer = self
            .request("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("starting a Chromium session: {e}"));
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_string();
        Session { driver: self, id }
    }
}

/// One browser; closed when dropped.
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .request("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver
            .request(method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Open `url` (returns once the page has loaded).
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments` holds `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The element `css` selects, if there is one now.
    pub fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.id);
        let body = json!({ "using": "css selector", "value": css });
        let found = self.driver.request("POST", &path, Some(body)).ok()?;
        found[ELEMENT].as_str().map(str::to_string)
    }

    /// Wait (up to `timeout`) for the element `css` selects.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.find(css) {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} after {timeout:?}: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Click the element `css` selects, as a user does.
    /// The page may redraw between finding and clicking (the console
    /// redraws on live events): a stale element is found again.
    pub fn click(&self, css: &str) {
        for _ in 0..20 {
            let element = self.wait_for(css, Duration::from_secs(10));
            let path = format!("/session/{}/element/{element}/click", self.id);
            match self.driver.request("POST", &path, None) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("WebDriver: {e}"),
            }
        }
        panic!("{css} went stale 20 times in a row");
    }

    /// Type `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css, Duration::from_secs(10));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Press keys on whatever has the focus.
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [
                {"type": "key", "id": "keyboard", "actions": actions}
            ]})),
        );
    }

    /// The text of the element `css` selects ("" if there is none).
    pub fn text(&self, css: &str) -> String {
        self.run(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Poll `script` until it returns something truthy (not false, null,
    /// 0 or ""); that value.
    pub fn until(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.run(script, json!([]));
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not after {timeout:?}; the page says:\n{}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Save the page as a PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        use data_encoding::BASE64;
        let png = self.call("GET", "/screenshot", None);
        let bytes = BASE64
            .decode(png.as_str().unwrap_or_default().as_bytes())
            .expect("the screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshots directory");
        }
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    /// The browser's log since the last call (console messages, failed loads).
    pub fn browser_log(&self) -> Vec<Value> {
        self.call("POST", "/se/log", Some(json!({ "type": "browser" })))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Long enough for a loaded 2-core machine; the spec's 2 s is reported, not asserted.
pub const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, or None (with the reason printed) when this
/// machine has no browser and the tests are not required to run.
pub fn browser() -> Option<Driver> {
    if let Some(why) = missing_browser() {
        if std::env::var("WARDEN_BROWSER_REQUIRED").as_deref() == Ok("1") {
            panic!("WARDEN_BROWSER_REQUIRED=1 but {why}");
        }
        eprintln!("skipped: {why}; set WARDEN_BROWSER_REQUIRED=1 to make this a failure");
        return None;
    }
    Some(Driver::start(super::free_port()))
}

/// Where the console tests write their screenshots.
pub fn screenshots() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}
