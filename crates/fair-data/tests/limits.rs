//! Hostile files (issue 16, defect 1): a malformed npy header, an image with a zero side, a
//! zip entry declaring far more than it holds, a deflate bomb and an extreme aspect ratio are
//! errors naming the file, or cheap, never a panic or an abort. One test function: the limits
//! are process-wide.

use std::io::Write;

use fair_data::{clip_grey, read_npz, write_npz, GrayImage, Limits, NpyArray};

fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn zip_with(path: &std::path::Path, name: &str, bytes: &[u8], method: zip::CompressionMethod) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file(name, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
    z.write_all(bytes).unwrap();
    z.finish().unwrap();
}

#[test]
fn hostile_files_are_errors_not_crashes() {
    let dir = std::env::temp_dir().join(format!("fair-data-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A non-ASCII dtype string used to panic on a byte slice inside a character.
    let e = fair_data::parse_npy(&npy("<é4", "(2,)", &[0; 8]), &dir.join("x.npy"), "x").unwrap_err().to_string();
    assert!(e.contains("unsupported dtype"), "{e}");

    // An image with a zero side used to divide by zero in the resize.
    let path = dir.join("zero.npz");
    write_npz(&path, &[("slo_fundus", NpyArray::from_u8(vec![0, 5], &[]))]).unwrap();
    let e = fair_data::read_npz_fundus(&path).unwrap_err().to_string();
    assert!(e.contains("zero.npz"), "{e}");
    assert_eq!(clip_grey(&GrayImage { height: 0, width: 5, pixels: vec![] }, 8), vec![0; 64]);

    // An entry whose central directory declares ~4 GB while holding 80 bytes: refused before
    // allocating.
    let path = dir.join("declared.npz");
    let body = npy("|u1", "(2, 2)", &[1, 2, 3, 4]);
    zip_with(&path, "slo_fundus.npy", &body, zip::CompressionMethod::Stored);
    let mut bytes = std::fs::read(&path).unwrap();
    let cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bytes[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes()); // uncompressed size
    let local = bytes.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    bytes[local + 22..local + 26].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = read_npz(&path).unwrap_err().to_string();
    assert!(e.contains("declared.npz") && e.contains("declares 4294967280 bytes"), "{e}");

    // A deflate bomb: 8 MB of zeros in a few kilobytes, above a ratio cap of 100.
    let path = dir.join("bomb.npz");
    let zeros = npy("|u1", "(2048, 4096)", &vec![0; 2048 * 4096]);
    zip_with(&path, "slo_fundus.npy", &zeros, zip::CompressionMethod::Deflated);
    assert!(read_npz(&path).is_ok(), "within the default ratio");
    Limits { max_ratio: 100, ..Limits::default() }.install();
    let e = read_npz(&path).unwrap_err().to_string();
    assert!(e.contains("bomb.npz") && e.contains("max_ratio 100"), "{e}");

    // The pixel cap.
    Limits { max_pixels: 1000, ..Limits::default() }.install();
    let path = dir.join("big.npz");
    write_npz(&path, &[("slo_fundus", NpyArray::from_u8(vec![40, 40], &[7; 1600]))]).unwrap();
    let e = fair_data::read_npz_fundus(&path).unwrap_err().to_string();
    assert!(e.contains("big.npz") && e.contains("1600 pixels") && e.contains("max_pixels = 1000"), "{e}");
    image::GrayImage::new(40, 40).save(dir.join("big.png")).unwrap();
    let e = fair_data::image_dimensions(&dir.join("big.png")).unwrap_err().to_string();
    assert!(e.contains("big.png") && e.contains("max_pixels"), "{e}");
    Limits::default().install();

    // Found by fuzzing (cargo xtask fuzz, target `image`): 1.3 KB of JPEG declaring 63,839 x
    // 304 pixels took seconds to decode. Pixels beyond the file's bytes times max_ratio are
    // refused from the header.
    let tiny = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/tiny-jpeg-63839x304.jpg");
    let e = fair_data::read_image(&tiny).unwrap_err().to_string();
    assert!(e.contains("63839 x 304 pixels from 1360 bytes") && e.contains("max_ratio"), "{e}");

    // A 1 x 200,000 image: the crop needs 224 x 224 of a 224 x 44,800,000 resize, and only
    // those coefficients are computed (it used to take 1.1 GB).
    let thin = GrayImage { height: 200_000, width: 1, pixels: (0..200_000).map(|i| (i % 256) as f32).collect() };
    assert_eq!(clip_grey(&thin, 224).len(), 224 * 224);
    std::fs::remove_dir_all(&dir).ok();
}
