//! A real headless Chromium for the page tests, driven over WebDriver.
//!
//! Each [`Browser`] starts its own `chromedriver` on a free loopback port with a fresh profile, so
//! tests running at once never share cookies or a session. The driver runs in a process group
//! of its own, which the browser it starts joins, and the whole group is killed when the
//! `Browser` is dropped: killing the driver alone left its browser running, some 200 MB each,
//! after every test that ended without [`Browser::close`] (a failure, an early return).
//!
//! The binaries come from Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs
//! them). Where they are missing, [`Browser::start`] returns `None` after printing
//! [`SKIP_MESSAGE`], and `.ci/run` fails the run if any test printed it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// Printed by a page test that could not find the browser; `.ci/run` looks for it.
pub const SKIP_MESSAGE: &str = "install chromium and chromium-driver to run the browser tests";

/// Overrides the driver's path (default: `chromedriver` on the `PATH`, then `/usr/bin`).
pub const CHROMEDRIVER_ENV: &str = "SPSE_TOTP_CHROMEDRIVER";
/// Overrides the browser's path (default: `/usr/bin/chromium`).
pub const CHROMIUM_ENV: &str = "SPSE_TOTP_CHROMIUM";

/// The office screen the pages are designed for.
pub const DESKTOP: (u32, u32) = (1366, 768);
/// A common phone viewport, in CSS pixels.
pub const PHONE: (u32, u32) = (390, 844);

/// How long [`Browser::wait_for`] waits for an element before failing the test.
const ELEMENT_WAIT: Duration = Duration::from_secs(15);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// A new browser at the office screen size, or `None` (after printing why) when Chromium or
    /// its driver is not installed.
    pub async fn start() -> Result<Option<Self>> {
        Self::start_sized(DESKTOP).await
    }

    pub async fn start_sized((width, height): (u32, u32)) -> Result<Option<Self>> {
        let (Some(driver_path), Some(chromium_path)) = (chromedriver(), chromium()) else {
            eprintln!("{SKIP_MESSAGE}");
            return Ok(None);
        };
        let port = free_port()?;
        let mut driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", driver_path.display()))?;
        let profile = tempfile::tempdir().context("a browser profile folder")?;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium_path,
                // The users' language: pages that follow Accept-Language answer in Indonesian.
                "prefs": { "intl.accept_languages": "id-ID,id" },
                // The machine has no route out: without the background-networking switches
                // Chromium keeps opening connections that are refused.
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }
        });
        // Headless Chromium will not make a window narrower than 500 pixels: a phone's width is
        // emulated instead, so a phone-sized screenshot shows what a phone shows.
        let mut capabilities = capabilities;
        if width < 500 {
            capabilities["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0 }
            });
        }
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => bail!("capabilities are a JSON object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        // The driver takes a moment to listen; a session request before that is refused.
        for _ in 0..100 {
            if let Some(status) = driver.try_wait()? {
                bail!("{} exited at start: {status}", driver_path.display());
            }
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Ok(Some(Self {
                        client,
                        driver,
                        _profile: profile,
                    }))
                }
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no WebDriver session from {url}: {last_error:?}")
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Waits until an element matching the CSS selector is in the page, and returns it.
    pub async fn wait_for(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(ELEMENT_WAIT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for `{css}`"))
    }

    /// The visible text of the first element matching the CSS selector.
    pub async fn text_of(&self, css: &str) -> Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    /// The text of the first element matching the CSS selector, once it is shown: for what a
    /// page's script reveals after a request (an element still hidden has no visible text).
    pub async fn text_when_shown(&self, css: &str) -> Result<String> {
        let element = self.wait_for(css).await?;
        let deadline = tokio::time::Instant::now() + ELEMENT_WAIT;
        while !element.is_displayed().await? {
            if tokio::time::Instant::now() >= deadline {
                bail!("`{css}` is still hidden");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(element.text().await?)
    }

    /// Types `value` into the field matching the CSS selector, after clearing it.
    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let field = self.wait_for(css).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    /// Clicks `css` on a page whose own script may move on by itself at any moment (a waiting
    /// page does, once the service says the wait is over), and returns once the page it leads
    /// to shows `next`: whether the click or the script got there first, the test goes on from
    /// the same page. A click on a page already leaving finds its element gone, and is not an
    /// error while `next` may still come.
    pub async fn click_or_moved_on(&self, css: &str, next: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + ELEMENT_WAIT;
        let mut clicked = false;
        loop {
            if self.client.find(Locator::Css(next)).await.is_ok() {
                return Ok(());
            }
            if !clicked {
                if let Ok(button) = self.client.find(Locator::Css(css)).await {
                    clicked = button.click().await.is_ok();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("neither clicking `{css}` nor the page's script led to `{next}`");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks what submits a form or follows a link, and returns once the next page has replaced
    /// this one: until then the old page's elements are still found, and go stale under the
    /// test's hands.
    pub async fn click_to_load(&self, css: &str) -> Result<()> {
        let old_page = self.client.find(Locator::Css("html")).await?;
        self.click(css).await?;
        let deadline = tokio::time::Instant::now() + ELEMENT_WAIT;
        // Any call on an element of a page that has gone fails; while it answers, the old page
        // is still there.
        while old_page.tag_name().await.is_ok() {
            if tokio::time::Instant::now() >= deadline {
                bail!("clicking `{css}` loaded no new page");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.wait_for("body").await?;
        Ok(())
    }

    /// Answers "OK" to the page's `confirm()` (or `alert()`) and returns its text.
    pub async fn accept_dialog(&self) -> Result<String> {
        let text = self.client.get_alert_text().await?;
        self.client.accept_alert().await?;
        Ok(text)
    }

    /// Saves the whole page as a PNG, creating the folder if needed.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        // The whole page, not only what fits in the window: the window grows to the page's
        // height for the picture and goes back after.
        let (width, height) = self.client.get_window_size().await?;
        let (width, height) = (u32::try_from(width)?, u32::try_from(height)?);
        let page = self
            .script_number("return document.documentElement.scrollHeight")
            .await?;
        let viewport = self.script_number("return window.innerHeight").await?;
        let grown = page > viewport;
        if grown {
            let frame = height.saturating_sub(viewport);
            self.client.set_window_size(width, page + frame).await?;
        }
        let png = self.client.screenshot().await;
        if grown {
            self.client.set_window_size(width, height).await?;
        }
        write_png(path, &png?)
    }

    async fn script_number(&self, script: &str) -> Result<u32> {
        let value = self.client.execute(script, Vec::new()).await?;
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .with_context(|| format!("`{script}` answered {value}"))
    }

    /// Saves one element (e.g. a QR code) as a PNG, creating the folder if needed.
    pub async fn screenshot_element(&self, css: &str, path: &Path) -> Result<()> {
        let png = self.wait_for(css).await?.screenshot().await?;
        write_png(path, &png)
    }

    /// Ends the WebDriver session, then the driver and the browser. Dropping ends the two
    /// processes without the session.
    pub async fn close(self) -> Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("closing the WebDriver session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own group (see `start_sized`), and the browser is in it.
        if let Some(group) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn write_png(path: &Path, png: &[u8]) -> Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

/// The project's `docs/` folder, where the tests' screenshots are kept.
pub fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("docs")
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CHROMEDRIVER_ENV) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|folder| folder.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| existing("/usr/bin/chromedriver"))
}

fn chromium() -> Option<PathBuf> {
    match std::env::var_os(CHROMIUM_ENV) {
        Some(path) => Some(PathBuf::from(path)),
        None => existing("/usr/bin/chromium"),
    }
}

fn existing(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    path.is_file().then_some(path)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
