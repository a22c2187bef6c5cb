# install.cmake - `cmake --install` and `cpack -G DEB`: what goes where.
#
#   bin/dispatchd                       the CLI and daemon
#   lib/libdispatchd.a, lib/pkgconfig/dispatchd.pc, include/dispatchd.h
#                                       the worker API (static; the .pc is relocatable)
#   lib/systemd/system/dispatchd.service, dispatchd-reconcile.service
#   lib/systemd/user/dispatchd-up.service
#                                       units, ExecStart= filled in at install time
#                                       (so --prefix and the .deb's /usr are right)
#   share/dispatchd/                    Grafana dashboard + provisioning, Prometheus
#                                       rules, the metrics contract, an env file example
#   share/man/man1/dispatchd.1, share/bash-completion/completions/dispatchd
#                                       generated from the option tables (src/cli/man.c)
#
# The units go under the prefix (lib/systemd/...): systemd reads /usr/lib and
# /usr/local/lib alike. tests/install.sh installs into a DESTDIR and checks all of it.
include(GNUInstallDirs)

install(TARGETS dispatchd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/libdispatchd.a DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/dispatchd.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

file(RELATIVE_PATH DD_PC_TO_PREFIX /dd-prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /dd-prefix)
configure_file(${CMAKE_SOURCE_DIR}/deploy/dispatchd.pc.in ${CMAKE_BINARY_DIR}/dispatchd.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/dispatchd.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Units: configured when installing, with the prefix of that install (cmake
# --install --prefix, CPack's /usr), not the one configured.
set(DD_UNITS_OUT ${CMAKE_BINARY_DIR}/units)
foreach(unit dispatchd.service dispatchd-reconcile.service dispatchd-up.service)
  install(CODE "
    set(DD_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    configure_file(\"${CMAKE_SOURCE_DIR}/deploy/systemd/${unit}.in\" \"${DD_UNITS_OUT}/${unit}\" @ONLY)
  ")
endforeach()
install(FILES ${DD_UNITS_OUT}/dispatchd.service ${DD_UNITS_OUT}/dispatchd-reconcile.service
        DESTINATION lib/systemd/system)
install(FILES ${DD_UNITS_OUT}/dispatchd-up.service DESTINATION lib/systemd/user)

set(DD_SHARE ${CMAKE_INSTALL_DATADIR}/dispatchd)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/metrics.txt
              ${CMAKE_SOURCE_DIR}/deploy/systemd/dispatchd.env.example DESTINATION ${DD_SHARE})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/deploy/grafana ${CMAKE_SOURCE_DIR}/deploy/prometheus
        DESTINATION ${DD_SHARE} PATTERN "*.test.yml" EXCLUDE) # the rules' own tests stay here

install(FILES ${CMAKE_BINARY_DIR}/dispatchd.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_BINARY_DIR}/dispatchd.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME dispatchd)

# The .deb: one package with the daemon, the units and the worker API.
set(CPACK_PACKAGE_NAME dispatchd)
set(CPACK_PACKAGE_VENDOR dispatchd)
set(CPACK_PACKAGE_CONTACT "dispatchd developers <dev@dispatchd.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "keeps exactly one healthy Temporal dispatcher per project and task queue")
set(CPACK_PACKAGE_DESCRIPTION
    "dispatchd keeps exactly one healthy dispatcher workflow per (project, task queue) across "
    "hosts sharing a Temporal cluster and a Redis, runs a command only while this host owns "
    "it, and keeps a local Temporal + Redis stack alive for development. Includes systemd "
    "units, the worker API (libdispatchd.a, dispatchd.h), a Grafana dashboard and Prometheus "
    "alert rules.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Debian 12's runtime packages of what dispatchd links (pkg-config names in
# CMakeLists.txt: libuv, hiredis, openssl, jansson).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6 (>= 2.34), libuv1 (>= 1.44), libhiredis0.14, libjansson4, libssl3")
# `dispatchd up` runs these when present; `run` only talks to remote ones.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server")
include(CPack)
