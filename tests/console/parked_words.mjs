// Checks the console's warning for parked uploads (console/js/ui.js
// parkedWarning) without a browser: none without parked uploads, and with
// them the count, the S3 code, that nothing is lost, and the fix for the
// code. Run by tests/e2e_console.rs; prints one line per case and exits 1
// on any failure.
const { parkedWarning } = await import("../../console/js/ui.js");

let bad = 0;
const check = (name, ok, got) => {
  if (ok) console.log(`ok ${name}`);
  else {
    bad++;
    console.log(`FAIL ${name}: ${JSON.stringify(got)}`);
  }
};

for (const none of [null, undefined, { count: 0, code: "AccessDenied", since: 1 }]) {
  const w = parkedWarning(none);
  check(`no warning for ${JSON.stringify(none)}`, w === "", w);
}
const since = Date.UTC(2026, 11, 6, 23, 14, 5) / 1000;
const denied = parkedWarning({ count: 3, code: "AccessDenied", since });
check("AccessDenied names the code", denied.includes("(AccessDenied)"), denied);
check("counts the uploads", denied.includes("3 uploads waiting since "), denied);
check("says nothing is lost", denied.includes("kept on livebucket's disk and retried"), denied);
check("AccessDenied's fix", denied.includes("write permission on the bucket"), denied);
const one = parkedWarning({ count: 1, code: "NoSuchBucket", since });
check("one upload", one.includes("1 upload waiting"), one);
check("NoSuchBucket's fix", one.includes("create the bucket in the store"), one);
const region = parkedWarning({ count: 2, code: "AuthorizationHeaderMalformed", since });
check("a wrong region takes a restart", region.includes("[s3] region") && region.includes("restart"), region);
const other = parkedWarning({ count: 2, code: "HTTP_400", since: NaN });
check("an unknown code: the general fix", other.includes("(HTTP_400)") &&
  other.includes("the access key or the bucket, then reload livebucket") && !other.includes("since"), other);

process.exit(bad ? 1 : 0);
