# rescued: a rescue-mode netboot orchestrator.
# `make` builds, `make check` builds and runs every test, `make run` starts it.

# The version, written here only: rescued and rescuectl print it.
VERSION := 0.2.0
CC      ?= cc
PKGS    := libcurl libarchive libmicrohttpd libssh jansson sqlite3 gnutls libsystemd \
           libpq
WARN    := -Wall -Wextra -Wshadow -Wmissing-prototypes -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -Iorchestrator/src \
           $(PKG_CFLAGS) -I/usr/include/iniparser
LDLIBS   = $(PKG_LIBS) -liniparser -lwslay -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

B       := build
MAINS   := orchestrator/src/rescued.c orchestrator/src/rescuectl.c
SRCS    := $(filter-out $(MAINS),$(wildcard orchestrator/src/*.c))
OBJS    := $(SRCS:orchestrator/src/%.c=$(B)/obj/%.o)
SANOBJS := $(SRCS:orchestrator/src/%.c=$(B)/san/%.o)
# docs/openapi.yaml as JSON, embedded (served at /v1/openapi.json).
OBJS    += $(B)/obj/openapi.o
SANOBJS += $(B)/san/openapi.o
TESTS   := $(patsubst orchestrator/tests/%.c,$(B)/test/%,$(wildcard orchestrator/tests/test_*.c))
SETUP   := $(B)/.setup-done

.PHONY: all setup check unit integration run bench bench-console image \
        check-image bench-image bench-rescue clean format deb check-deb \
        bench-fleet
all: $(B)/rescued $(B)/rescuectl

# The portal (portal/): npm ci when the lock file changed (from the npm
# registry, scripts off: nothing runs or is fetched at build or run time
# but the locked packages), then esbuild bundles it into build/ui, which
# rescued serves ([ui] dir, default "ui" beside the binary).
UI_SRCS := $(wildcard portal/src/*) portal/build.mjs
all: $(B)/ui/index.html
portal/node_modules/.lock-done: portal/package-lock.json portal/package.json | $(SETUP)
	@echo "  NPM     portal (npm ci)"
	@cd portal && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
$(B)/ui/index.html: portal/node_modules/.lock-done $(UI_SRCS)
	@echo "  ESBUILD $(B)/ui"
	@node portal/build.mjs $(B)/ui

# Install packages once; re-run when the package list changes.
$(SETUP): scripts/setup
	@scripts/setup
	@mkdir -p $(B) && touch $@
setup: $(SETUP)

# The libraries' flags are asked of pkg-config only after setup has installed
# the -dev packages: make builds this file first (running setup), then reads
# it and starts over, so no flag is ever computed on a machine that lacks them.
# Goals that build nothing (clean, format) neither run setup nor need it.
NOSETUP_GOALS := clean format
ifneq ($(filter-out $(NOSETUP_GOALS),$(or $(MAKECMDGOALS),all)),)
include $(B)/flags.mk
endif
$(B)/flags.mk: $(SETUP) Makefile
	@pkg-config --exists --print-errors $(PKGS)
	@{ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	   echo "PKG_LIBS := $$(pkg-config --libs $(PKGS))"; \
	   echo "ARCHIVE_LIBS := $$(pkg-config --libs libarchive)"; } >$@.tmp
	@mv $@.tmp $@

$(B)/obj/%.o: orchestrator/src/%.c $(wildcard orchestrator/src/*.h) | $(SETUP)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -c -o $@ $<

$(B)/san/%.o: orchestrator/src/%.c $(wildcard orchestrator/src/*.h) | $(SETUP)
	@mkdir -p $(@D)
	@echo "  CC san  $<"
	@$(CC) $(CFLAGS) -O1 $(SAN) -DUNITTEST -c -o $@ $<

$(B)/gen/openapi.json $(B)/gen/openapi.c &: docs/openapi.yaml \
                                          scripts/openapi-gen | $(SETUP)
	@mkdir -p $(@D)
	@echo "  GEN     $(B)/gen/openapi.c"
	@scripts/openapi-gen $< $(B)/gen/openapi.json $(B)/gen/openapi.c
$(B)/obj/openapi.o $(B)/san/openapi.o: $(B)/gen/openapi.c \
                                       orchestrator/src/openapi.h
	@mkdir -p $(@D)
	@$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libcore.a: $(OBJS)
	@rm -f $@ && ar rcs $@ $^
$(B)/libcore-san.a: $(SANOBJS)
	@rm -f $@ && ar rcs $@ $^

# The mains depend on the Makefile so that a new VERSION rebuilds them.
$(B)/rescued $(B)/rescuectl: $(B)/%: orchestrator/src/%.c $(B)/libcore.a Makefile
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) -DRESCUED_VERSION='"$(VERSION)"' -o $@ \
	    $(filter-out Makefile,$^) $(LDLIBS)

# Man pages, from scdoc sources in docs/man (NAME.SECTION.scd).
MANS := $(patsubst docs/man/%.scd,$(B)/man/%,$(wildcard docs/man/*.scd))
all: $(MANS)
$(B)/man/%: docs/man/%.scd | $(SETUP)
	@mkdir -p $(@D)
	@echo "  SCDOC   $@"
	@scdoc <$< >$@.tmp && mv $@.tmp $@

# Unit tests: one cmocka binary per module, with ASan and UBSan.
# The tests' shared headers (testutil.h, ...) are prerequisites too.
# LDFLAGS_<test> adds a test's own link flags: test_fleet swaps in a power
# driver double and a clock it moves (STYLE.md: outside calls by --wrap).
LDFLAGS_test_fleet := -Wl,--wrap=power_new \
                      -Wl,--wrap=now_mono_ms,--wrap=now_wall_ms \
                      -Wl,--wrap=store_transition_async
$(B)/test/%: orchestrator/tests/%.c $(B)/libcore-san.a \
             $(wildcard orchestrator/tests/*.h) Makefile
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) -O1 $(SAN) -DUNITTEST $(LDFLAGS_$*) -o $@ \
	    $(filter-out %.h Makefile,$^) $(LDLIBS) -lcmocka

# test_store and test_facility run their cases on SQLite and on a
# PostgreSQL of their own (scripts/test-pg: initdb in a temp dir, a unix
# socket, torn down after).
UNIT_WRAP_test_store := scripts/test-pg run
unit: $(TESTS)
	@fail=0; for t in $(TESTS); do \
	    echo "== $$t"; \
	    case $$t in */test_store|*/test_facility) w="$(UNIT_WRAP_test_store)";; *) w=;; esac; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$w $$t || fail=1; \
	done; exit $$fail

# Fuzzing (orchestrator/fuzz/README.md): one libFuzzer target per parser,
# built with clang over the modules built again with its coverage.  `make
# fuzz` runs each for FUZZ_SECONDS, keeping what it finds under
# build/fuzz/; `fuzz-corpus` (part of check) runs each over its checked-in
# corpus only.
FUZZCC       ?= clang
FUZZ_SECONDS ?= 30
FUZZSAN      := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=all -Wno-string-concatenation
FUZZOBJS     := $(SRCS:orchestrator/src/%.c=$(B)/fuzzobj/%.o) \
                $(B)/fuzzobj/openapi.o
FUZZERS      := $(patsubst orchestrator/fuzz/%.c,$(B)/fuzz/%, \
                $(wildcard orchestrator/fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-corpus fuzz-clean
$(B)/fuzzobj/%.o: orchestrator/src/%.c $(wildcard orchestrator/src/*.h) | $(SETUP)
	@mkdir -p $(@D)
	@echo "  CC fuzz $<"
	@$(FUZZCC) $(CFLAGS) -O1 $(FUZZSAN) -fsanitize=fuzzer-no-link -c -o $@ $<
$(B)/fuzzobj/openapi.o: $(B)/gen/openapi.c orchestrator/src/openapi.h
	@mkdir -p $(@D)
	@$(FUZZCC) $(CFLAGS) -O1 -c -o $@ $<
$(B)/libcore-fuzz.a: $(FUZZOBJS)
	@rm -f $@ && ar rcs $@ $^
$(B)/fuzz/%: orchestrator/fuzz/%.c orchestrator/fuzz/fuzz.h \
             $(B)/libcore-fuzz.a Makefile
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	@$(FUZZCC) $(CFLAGS) -O1 $(FUZZSAN) -fsanitize=fuzzer -o $@ \
	    $(filter %.c %.a,$^) $(LDLIBS)
fuzz: $(FUZZERS)
	@for t in $(FUZZERS); do n=$${t##*/fuzz_}; \
	    mkdir -p $(B)/fuzz/corpus/$$n $(B)/fuzz/crashes; \
	    echo "== $$t ($(FUZZ_SECONDS) s)"; \
	    $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(B)/fuzz/crashes/$$n- \
	        $(B)/fuzz/corpus/$$n orchestrator/fuzz/corpus/$$n || exit 1; \
	done
fuzz-corpus: $(FUZZERS)
	@for t in $(FUZZERS); do n=$${t##*/fuzz_}; \
	    echo "== $$t over orchestrator/fuzz/corpus/$$n"; \
	    $$t -runs=0 orchestrator/fuzz/corpus/$$n 2>$(B)/fuzz/$$n.log || \
	        { cat $(B)/fuzz/$$n.log; exit 1; }; \
	done
clean: fuzz-clean
fuzz-clean:
	rm -rf $(B)/fuzzobj $(B)/fuzz $(B)/libcore-fuzz.a

# STRICT=1: a skipped case fails (what it lacks is for setup to provide).
integration: all image
	qemu-tests/selftest
	STRICT=1 qemu-tests/run

# Unit tests first (seconds), then the image and its own boot test, then
# the integration cases, which boot the image in the lab.
check: all unit fuzz-corpus check-image integration

run: all
	scripts/run

bench: all
	scripts/bench

bench-console: all $(B)/echoclient
	scripts/bench-console

# The echo bench's one client for every path (SSH by libssh, WebSocket by
# libwslay), so each path's figure carries the same client cost.
$(B)/echoclient: scripts/echoclient.c | $(SETUP)
	$(CC) $(CFLAGS) -o $@ $< -lssh -lwslay

# The boot storm's load tool (scripts/bootstorm.c), and the fleet's figures.
$(B)/bootstorm: scripts/bootstorm.c | $(SETUP)
	@echo "  CC      $@"
	@$(CC) $(CFLAGS) -o $@ $< $(PKG_LIBS)
bench-fleet: all $(B)/bootstorm
	scripts/bench-fleet

# The rescue RAM image (initramfs/): the tool, then the script, which keeps
# its own stamp so a second run with nothing changed takes seconds.
# Only util and log: a change elsewhere in the daemon must not rebuild the
# image (the image's cache key includes this binary).
$(B)/mkrescue: initramfs/mkrescue.c $(B)/obj/util.o $(B)/obj/log.o
	$(CC) $(CFLAGS) -o $@ $^ $(ARCHIVE_LIBS)

# ARCH=arm64: the arm64 image in $(B)/image-arm64 (with its GRUB network
# loader); ARCHES="x86_64 arm64": both.  The default is x86's alone.
ARCHES ?= $(or $(ARCH),x86_64)
image: $(B)/mkrescue
	@for a in $(ARCHES); do \
	    case $$a in \
	    x86_64|amd64) initramfs/build-image && scripts/mkiso || exit 1 ;; \
	    *) ARCH=$$a initramfs/build-image || exit 1 ;; \
	    esac; \
	done

check-image: image
	initramfs/tests/boot-test

# The arm64 image, for the aarch64 lab case (110, the seeds' scenario on
# an emulated arm64 server: about 3 minutes), which make integration runs
# with the rest; check-arm64 runs it alone.
.PHONY: image-arm64 check-arm64
image-arm64: $(B)/mkrescue
	ARCH=arm64 initramfs/build-image
integration: image-arm64
check-arm64: all image-arm64
	STRICT=1 qemu-tests/run 110

bench-image: image
	initramfs/bench-image

bench-rescue: all image
	scripts/bench-rescue

# The Debian packages, and the same installed and run under systemd in a
# container (outside make check: see scripts/deb and scripts/check-deb).
deb: all image
	scripts/deb
check-deb: deb
	scripts/check-deb

format:
	clang-format -i orchestrator/src/*.[ch] orchestrator/tests/*.c

clean:
	rm -rf $(B)/obj $(B)/san $(B)/test $(B)/*.a $(B)/rescued $(B)/rescuectl \
	    $(B)/mkrescue $(B)/image $(B)/image-arm64 $(B)/gen $(B)/man \
	    $(B)/bootstorm
# The portal's build too: build/ui, and portal/node_modules, which `make`
# made by `npm ci` from the checked-in lock file (clean, as there is no
# distclean: the next make puts it back from npm's cache, and a tree of
# packages the lock file no longer names must not outlive a clean); and
# the bench's echoclient.  Kept: build/.setup-done and flags.mk (the
# machine's packages, not the build's), build/lab (a running lab's state)
# and build/artifacts (the last test run's screenshots).
clean: portal-clean
.PHONY: portal-clean
portal-clean:
	rm -rf $(B)/ui portal/node_modules $(B)/echoclient

-include $(wildcard $(B)/obj/*.d)

