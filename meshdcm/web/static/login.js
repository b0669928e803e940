// meshdcm login page: the page asked for (a deep link such as #/study/UID) goes through the login and back.
"use strict";
const next = document.getElementById("login-next");
if (!next.value && location.hash.startsWith("#/")) next.value = location.hash;
