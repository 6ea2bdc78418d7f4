# SPDX-License-Identifier: MIT
# Runs at install time (install(CODE) in CMakeLists.txt includes it), not at configure time, so
# the files it writes name the prefix of *this* install: `cmake --install build --prefix /opt/x`
# gives a unit whose ExecStart is /opt/x/bin/constellation-agent and an aip.pc whose prefix is
# /opt/x, whatever prefix the build was configured with. DESTDIR (staging, e.g. a Debian
# package's tree) is where the files are written, never part of the paths inside them.
#
# Set by the caller: AIP_TEMPLATES (a build-dir folder with the .in copies), AIP_BINDIR,
# AIP_LIBDIR, AIP_INCLUDEDIR, AIP_UNITDIR (each relative to the prefix or absolute),
# PROJECT_VERSION.

cmake_path(SET AIP_PREFIX NORMALIZE "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "(.)/$" "\\1" AIP_PREFIX "${AIP_PREFIX}")

# aip_install_dir(OUT DIR): DIR made absolute against the prefix.
function(aip_install_dir out dir)
    if(IS_ABSOLUTE "${dir}")
        cmake_path(SET d NORMALIZE "${dir}")
    else()
        cmake_path(SET d NORMALIZE "${AIP_PREFIX}/${dir}")
    endif()
    string(REGEX REPLACE "(.)/$" "\\1" d "${d}")
    set(${out} "${d}" PARENT_SCOPE)
endfunction()

# aip_pc_dir(OUT DIR): DIR for aip.pc, written as ${prefix}/... when it is under the prefix,
# so pkg-config users can still override prefix (--define-variable=prefix=...).
function(aip_pc_dir out dir)
    aip_install_dir(abs "${dir}")
    string(FIND "${abs}/" "${AIP_PREFIX}/" at)
    if(at EQUAL 0 AND NOT AIP_PREFIX STREQUAL "/")
        string(LENGTH "${AIP_PREFIX}" n)
        string(SUBSTRING "${abs}" ${n} -1 tail)
        set(${out} "\${prefix}${tail}" PARENT_SCOPE)
    else()
        set(${out} "${abs}" PARENT_SCOPE)
    endif()
endfunction()

# aip_install_configured(TEMPLATE DIR NAME): configure TEMPLATE into $DESTDIR/DIR/NAME.
function(aip_install_configured template dir name)
    set(dest "$ENV{DESTDIR}${dir}/${name}")
    message(STATUS "Installing: ${dest} (configured for prefix ${AIP_PREFIX})")
    configure_file("${template}" "${dest}" @ONLY)
    file(CHMOD "${dest}" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    # so `xargs rm < install_manifest.txt` removes them too
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${dest}")
    set(CMAKE_INSTALL_MANIFEST_FILES "${CMAKE_INSTALL_MANIFEST_FILES}" PARENT_SCOPE)
endfunction()

aip_install_dir(AIP_FULL_BINDIR "${AIP_BINDIR}")
aip_install_dir(AIP_FULL_LIBDIR "${AIP_LIBDIR}")
aip_install_dir(AIP_FULL_UNITDIR "${AIP_UNITDIR}")
aip_pc_dir(AIP_PC_LIBDIR "${AIP_LIBDIR}")
aip_pc_dir(AIP_PC_INCLUDEDIR "${AIP_INCLUDEDIR}")

aip_install_configured("${AIP_TEMPLATES}/constellation-agent.service.in" "${AIP_FULL_UNITDIR}"
                       constellation-agent.service)
aip_install_configured("${AIP_TEMPLATES}/aip.pc.in" "${AIP_FULL_LIBDIR}/pkgconfig" aip.pc)
