#!/usr/bin/env python3
"""Drives two kith web pages in headless Chromium, as two people would (tests/web_browser.rs
starts the nodes and runs this): A hands B a ticket, B connects with it, both join a channel,
a message typed on A appears on B, script in chat text and in a file name stays text, a file
uploaded on A is fetched and downloaded on B, B follows a community and A's posts in it appear
on B's page (script in a post body stays text), and a wrong or missing token gets nothing.

Needs the `selenium` package (PyPI) and the distribution's chromium and chromedriver.
Prints one JSON line of figures on success; exits non-zero with the reason otherwise."""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30


def browser(download_dir):
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"]:
        options.add_argument(arg)
    binary = os.environ.get("KITH_CHROMIUM", "/usr/bin/chromium")
    if os.path.exists(binary):
        options.binary_location = binary
    options.add_experimental_option("prefs", {
        "download.default_directory": download_dir,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver_path = os.environ.get("KITH_CHROMEDRIVER", "/usr/bin/chromedriver")
    service = Service(driver_path) if os.path.exists(driver_path) else Service()
    return webdriver.Chrome(service=service, options=options)


def wait(driver, what, predicate, timeout=TIMEOUT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))
    except Exception as e:
        status = driver.find_element(By.ID, "status").text if driver.find_elements(By.ID, "status") else ""
        raise AssertionError(f"timed out waiting for {what} (status line: {status!r})") from e


def tab(driver, name):
    driver.find_element(By.CSS_SELECTOR, f"nav button[data-view='{name}']").click()


def load(driver, url):
    start = time.perf_counter()
    driver.get(url)
    wait(driver, "the live socket", lambda d: d.find_element(By.ID, "conn").text == "live")
    return (time.perf_counter() - start) * 1000


def join(driver, channel):
    tab(driver, "chat")
    box = driver.find_element(By.ID, "join-name")
    box.send_keys(channel)
    box.send_keys(Keys.ENTER)
    wait(driver, f"#{channel} to open",
         lambda d: d.find_element(By.ID, "conv-title").text == "#" + channel)


def message_box(driver):
    # The box is found by its label, as a person (or a screen reader) finds it.
    label = driver.find_element(By.XPATH, "//label[normalize-space()='Message']")
    return driver.find_element(By.ID, label.get_attribute("for"))


def texts(driver):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages .text")]


def raw_get(url, headers=None, method="GET", body=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_gate(url_a):
    parts = urlsplit(url_a)
    base = f"{parts.scheme}://{parts.netloc}"
    token = parts.path.strip("/")
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")
    for path in ["/", f"/{wrong}/", f"/{wrong}/api/v1/peers", "/api/v1/peers", f"/{token[:-1]}/",
                 f"/{wrong}/files", f"/{wrong}/app.js"]:
        status, body = raw_get(base + path)
        assert status == 404 and body == b"", f"{path}: {status} {body[:80]!r}"
    # With the token, but from another site: nothing either.
    status, _ = raw_get(url_a + "api/v1/chat", method="POST", body=b'{"action":"channels"}',
                        headers={"content-type": "application/json", "origin": "http://evil.example"})
    assert status == 403, f"cross-site POST: {status}"
    status, _ = raw_get(url_a + "api/v1/chat", method="POST", body=b'{"action":"channels"}',
                        headers={"content-type": "application/json"})
    assert status == 403, f"POST without Origin: {status}"
    status, _ = raw_get(url_a, headers={"host": "evil.example:80"})
    assert status == 403, f"rebound host: {status}"


def file_by_ticket(a, b, work):
    """A uploads a file and hands out a file ticket on its page; B pastes the ticket into its
    fetch box and gets the file."""
    content = os.urandom(50_000)
    path = os.path.join(work, "by-ticket.bin")
    with open(path, "wb") as f:
        f.write(content)
    tab(a, "files")
    a.find_element(By.ID, "upload").send_keys(path)
    wait(a, "the second upload", lambda d: "by-ticket.bin" in d.find_element(By.ID, "status").text)
    file_hash = a.find_element(By.ID, "status").text.rsplit(" ", 1)[-1]
    assert len(file_hash) == 64, file_hash
    wait(a, "the file's row", lambda d: d.execute_script(
        "for (const tr of document.querySelectorAll('#files tbody tr'))"
        "  if (tr.querySelector('td.hash').textContent === arguments[0])"
        "    { tr.querySelector('button.ticket').click(); return true; }"
        "return false;", file_hash))
    wait(a, "a file ticket", lambda d: d.find_element(By.ID, "file-ticket").get_attribute("value").startswith("kith-file:"))
    ticket = a.find_element(By.ID, "file-ticket").get_attribute("value")
    wait(a, "the file ticket's QR code", lambda d: d.execute_script(
        "const i = document.getElementById('file-ticket-qr'); return i.complete && i.naturalWidth > 0;"))

    tab(b, "files")
    box = b.find_element(By.ID, "fetch-hash")
    box.clear()
    box.send_keys(ticket)
    b.find_element(By.CSS_SELECTOR, "#fetch-form button").click()
    wait(b, "the fetch by ticket", lambda d: "fetched" in d.find_element(By.ID, "status").text)
    wait(b, "the ticket's file in B's list", lambda d: file_hash in d.execute_script(
        "return [...document.querySelectorAll('#files td.hash')].map(e => e.textContent)"))


def post_texts(driver):
    # Read in one script: the list is re-rendered as posts arrive, so elements found first
    # may be gone by the time their text is asked for.
    return driver.execute_script(
        "return [...document.querySelectorAll('#posts .text')].map(e => e.textContent)")


def pick_community(driver, name):
    tab(driver, "posts")
    box = driver.find_element(By.ID, "community")
    box.clear()
    box.send_keys(name)


def posts_between(a, b, figures):
    """B follows a community on its page; A writes posts in it on A's page; B's page shows
    them, script as text."""
    pick_community(b, "science")
    b.find_element(By.ID, "follow").click()
    wait(b, "the follow", lambda d: "following science" in d.find_element(By.ID, "status").text)
    wait(b, "the followed community", lambda d: "(followed)" in d.find_element(By.ID, "posts-title").text)
    pick_community(a, "science")
    a.find_element(By.CSS_SELECTOR, "#community-form button[type='submit']").click()
    wait(a, "the community on A", lambda d: d.find_element(By.ID, "posts-title").text.startswith("science"))

    def write(text):
        a.find_element(By.ID, "post-text").send_keys(text)
        sent = a.execute_script("return Date.now()")
        a.find_element(By.CSS_SELECTOR, "#post-form button[type='submit']").click()
        wait(a, "the post on A", lambda d: text in post_texts(d))
        return sent

    first = "first post from A " + str(time.time())
    write(first)
    wait(b, "A's post on B", lambda d: first in post_texts(d))

    # Script in a post body stays text on the other page.
    evil = "<img src=x onerror=\"window.__pwned=3\"><script>window.__pwned=4</script>"
    write(evil)
    wait(b, "the script-like post on B", lambda d: evil in post_texts(d))
    assert b.execute_script("return window.__pwned === undefined"), "a post body ran as script"
    assert not b.find_elements(By.CSS_SELECTOR, "#posts img, #posts script")
    standing = b.execute_script(
        "for (const li of document.querySelectorAll('#posts li'))"
        "  if (li.querySelector('.text').textContent === arguments[0])"
        "    return li.querySelector('.standing').textContent;", evil)
    assert standing and "verified" in standing, standing

    # Post time, page to page: A's clock at Post, B's when the text shows.
    b.execute_script("""
        window.__postSeen = {};
        new MutationObserver(() => {
          for (const e of document.querySelectorAll('#posts .text'))
            if (!(e.textContent in window.__postSeen)) window.__postSeen[e.textContent] = Date.now();
        }).observe(document.getElementById('posts'), {childList: true, subtree: true});
    """)
    delays = []
    for i in range(3):
        text = f"post {i} {time.time()}"
        sent = write(text)
        wait(b, f"post {i} on B", lambda d: d.execute_script("return window.__postSeen[arguments[0]]", text))
        delays.append(b.execute_script("return window.__postSeen[arguments[0]]", text) - sent)
    figures["post_ms_median"] = statistics.median(delays)
    figures["post_ms_max"] = max(delays)

    # B mutes A as a post author: A's posts leave B's list; unmuted, they come back.
    click_in_post(b, first, "button.mute")
    wait(b, "A's posts hidden on B", lambda d: first not in post_texts(d))
    b.find_element(By.CSS_SELECTOR, "#authors-box summary").click()
    wait(b, "the muted author listed", lambda d: d.execute_script(
        "const u = document.querySelector('#post-authors button.mute');"
        "if (u) { u.click(); return true; } return false;"))
    wait(b, "A's posts back on B", lambda d: first in post_texts(d))


def click_in_post(driver, text, selector):
    wait(driver, f"{selector} of the post {text!r}", lambda d: d.execute_script(
        "for (const li of document.querySelectorAll('#posts li'))"
        "  if (li.querySelector('.text').textContent === arguments[0])"
        "    { li.querySelector(arguments[1]).click(); return true; }"
        "return false;", text, selector))


def person_actions(a, b):
    """On B's chat view, A (a person B has heard) is muted and unmuted, blocked and unblocked
    with the buttons of the direct conversation."""
    guid = a.execute_script("return document.body.dataset.nodeId").rsplit("@", 1)[-1]
    tab(b, "chat")
    wait(b, "A among the people", lambda d: d.execute_script(
        "const li = document.querySelector('#people li[data-key=\"@' + arguments[0] + '\"]');"
        "if (li) { li.click(); return true; } return false;", guid))
    wait(b, "the person's buttons", lambda d: not d.find_element(By.ID, "person-actions").get_attribute("hidden"))
    for button, on, off in [("mute-person", "Mute", "Unmute"), ("block-person", "Block", "Unblock")]:
        assert b.find_element(By.ID, button).text == on
        b.find_element(By.ID, button).click()
        wait(b, f"{button} on", lambda d: d.find_element(By.ID, button).text == off)
        b.find_element(By.ID, button).click()
        wait(b, f"{button} off", lambda d: d.find_element(By.ID, button).text == on)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    downloads = os.path.join(args.work, "downloads")
    os.makedirs(downloads, exist_ok=True)
    figures = {}

    check_gate(args.a)

    a = browser(os.path.join(args.work, "downloads-a"))
    b = browser(downloads)
    try:
        # The browser refuses a page without the token too.
        parts = urlsplit(args.a)
        a.get(f"{parts.scheme}://{parts.netloc}/")
        assert "kith" not in a.page_source.lower().replace("<html><head></head><body></body></html>", ""), a.page_source[:200]

        loads = [load(a, args.a), load(b, args.b)]
        loads += [load(a, args.a) for _ in range(3)]
        figures["page_load_ms"] = round(statistics.median(loads), 1)

        # A hands out a ticket (text and QR code); B connects with it.
        tab(a, "peers")
        a.find_element(By.ID, "new-ticket").click()
        wait(a, "a ticket", lambda d: d.find_element(By.ID, "ticket-line").get_attribute("value").strip())
        ticket = a.find_element(By.ID, "ticket-line").get_attribute("value").strip()
        wait(a, "the QR code", lambda d: d.execute_script(
            "const i = document.getElementById('ticket-qr'); return i.complete && i.naturalWidth > 0;"))
        tab(b, "peers")
        b.find_element(By.ID, "connect-ticket").send_keys(ticket)
        b.find_element(By.CSS_SELECTOR, "#connect-form button").click()
        wait(b, "the link", lambda d: "linked with" in d.find_element(By.ID, "status").text)
        wait(a, "the peer on A's page", lambda d: "linked" in d.find_element(By.ID, "peers").text, timeout=15)

        # Both join a channel; A types, B reads.
        join(a, "lobby")
        join(b, "lobby")
        box = message_box(a)
        box.send_keys("hello from A")
        box.send_keys(Keys.ENTER)
        wait(b, "A's message on B", lambda d: "hello from A" in texts(d))
        assert box.get_attribute("value") == "", "Enter must send and clear the box"

        # Script in chat text stays text on the other page.
        evil = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>"
        box.send_keys(evil)
        box.send_keys(Keys.ENTER)
        wait(b, "the script-like message on B", lambda d: evil in texts(d))
        assert b.execute_script("return window.__pwned === undefined"), "chat text ran as script"
        assert not b.find_elements(By.CSS_SELECTOR, "#messages img, #messages script")

        # One-way delivery time, page to page: A's clock at Enter, B's when the text shows
        # (both pages run on this machine, so the clocks agree).
        b.execute_script("""
            window.__seen = {};
            new MutationObserver(() => {
              for (const e of document.querySelectorAll('#messages .text'))
                if (!(e.textContent in window.__seen)) window.__seen[e.textContent] = Date.now();
            }).observe(document.getElementById('messages'), {childList: true, subtree: true});
        """)
        delays = []
        for i in range(10):
            text = f"ping {i} {time.time()}"
            box.send_keys(text)
            sent = a.execute_script("return Date.now()")
            box.send_keys(Keys.ENTER)
            wait(b, f"message {i} on B", lambda d: d.execute_script("return window.__seen[arguments[0]]", text))
            delays.append(b.execute_script("return window.__seen[arguments[0]]", text) - sent)
        figures["message_ms_median"] = statistics.median(delays)
        figures["message_ms_max"] = max(delays)

        # B's unread count: a message to a channel B is not looking at.
        join(b, "elsewhere")
        box.send_keys("while B looks elsewhere")
        box.send_keys(Keys.ENTER)
        wait(b, "an unread count on #lobby", lambda d: d.execute_script(
            "const u = document.querySelector('#channels li[data-key=\"#lobby\"] .unread');"
            "return u && u.textContent === '1';"))

        # A uploads a file (with a name that is markup); B fetches it by hash and downloads it.
        content = os.urandom(300_000) + b"end"
        name = "<b onmouseover=alert(1)>report</b>.bin"
        path = os.path.join(args.work, "upload.bin")
        with open(path, "wb") as f:
            f.write(content)
        tab(a, "files")
        # The store names the file from the query string, so the local name does not matter
        # to the node; the browser sends the file's own name, which we set by a copy.
        named = os.path.join(args.work, "named")
        os.makedirs(named, exist_ok=True)
        try:
            named_path = os.path.join(named, name)
            with open(named_path, "wb") as f:
                f.write(content)
        except OSError:
            named_path = path
        a.find_element(By.ID, "upload").send_keys(named_path)
        wait(a, "the upload", lambda d: "stored" in d.find_element(By.ID, "status").text)
        status = a.find_element(By.ID, "status").text
        file_hash = status.rsplit(" ", 1)[-1]
        assert len(file_hash) == 64, status
        names = [e.text for e in a.find_elements(By.CSS_SELECTOR, "#files td.name")]
        assert os.path.basename(named_path) in names, names
        assert not a.find_elements(By.CSS_SELECTOR, "#files b")

        tab(b, "files")
        b.find_element(By.ID, "fetch-hash").send_keys(file_hash)
        b.find_element(By.CSS_SELECTOR, "#fetch-form button").click()
        wait(b, "the fetch", lambda d: "fetched" in d.find_element(By.ID, "status").text)
        wait(b, "the file in B's list", lambda d: file_hash in [e.text for e in d.find_elements(By.CSS_SELECTOR, "#files td.hash")])
        link = b.find_element(By.CSS_SELECTOR, f"#files a[href='files/{file_hash}']")
        link.click()

        def downloaded(_):
            done = [f for f in os.listdir(downloads) if not f.endswith(".crdownload")]
            return done and open(os.path.join(downloads, done[0]), "rb").read() == content
        wait(b, "the download", downloaded)
        got = hashlib.sha256(open(os.path.join(downloads, os.listdir(downloads)[0]), "rb").read()).hexdigest()
        assert got == hashlib.sha256(content).hexdigest()

        file_by_ticket(a, b, args.work)
        posts_between(a, b, figures)
        person_actions(a, b)
    finally:
        a.quit()
        b.quit()
    print(json.dumps(figures))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
